import pytest
import torch

from course_utils.target_modules import linear_module_names


def test_shipped_model_lists_gpt2_layers(base_model):
    assert linear_module_names(base_model) == ["c_attn", "c_fc", "c_proj"]


def test_output_layer_only_on_request(base_model):
    assert "lm_head" in linear_module_names(base_model, include_output_layer=True)
    assert "lm_head" not in linear_module_names(base_model)


def test_plain_torch_model():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Embedding(4, 2))
    model.add_module("q_proj", torch.nn.Linear(3, 3))
    assert linear_module_names(model) == ["0", "q_proj"]


def test_names_are_accepted_by_lora(base_model):
    from peft import LoraConfig, get_peft_model

    names = linear_module_names(base_model)
    model = get_peft_model(base_model, LoraConfig(r=2, target_modules=names))
    wrapped = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if hasattr(m, "lora_A")}
    assert wrapped == set(names)


def test_model_with_lora_lists_the_wrapped_layers_not_lora_internals(base_model):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(base_model, LoraConfig(r=2, target_modules=["c_attn"]))
    names = linear_module_names(model)
    assert names == ["c_attn", "c_fc", "c_proj"]
    assert "default" not in names and "lora_A" not in names


def test_not_a_model():
    with pytest.raises(TypeError, match="needs a torch model"):
        linear_module_names("gpt2")
