"""course_utils.adapter_format: the one home of file names, key parsing, target matching and layer shapes."""
import pytest
import torch

from course_utils.adapter_format import (
    CONFIG_FILE,
    LORA_KEY,
    LORA_PARTS,
    WEIGHTS_FILE,
    in_out_features,
    is_lora_name,
    matches_target,
    tensor_entries,
    unmatched_targets,
)


def test_file_names_are_peft_s():
    from peft.utils.constants import CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME

    assert (CONFIG_FILE, WEIGHTS_FILE) == (CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME)


@pytest.mark.parametrize("key, expected", [
    ("base_model.model.transformer.h.0.attn.c_attn.lora_A.weight", ("transformer.h.0.attn.c_attn", "A")),
    ("base_model.model.transformer.h.3.mlp.c_fc.lora_B.weight", ("transformer.h.3.mlp.c_fc", "B")),
    ("base_model.model.transformer.wte.lora_embedding_A", ("transformer.wte", "A")),
    ("base_model.model.score.weight", None),
    ("base_model.model.transformer.h.0.attn.c_attn.lora_magnitude_vector", None),
])
def test_lora_key_names_the_module_and_the_matrix(key, expected):
    m = LORA_KEY.match(key)
    assert ((m["module"], m["ab"]) if m else None) == expected


@pytest.mark.parametrize("name, any_part, a, b", [
    ("base_model.model.transformer.h.0.attn.c_attn.lora_A.default.weight", True, True, False),
    ("base_model.model.transformer.h.0.attn.c_attn.lora_B.weight", True, False, True),
    ("base_model.model.transformer.wte.lora_embedding_B.default", True, False, True),
    ("base_model.model.transformer.h.0.attn.c_attn.lora_magnitude_vector.default.weight", True, False, False),
    ("base_model.model.transformer.h.0.attn.c_attn.base_layer.weight", False, False, False),
    ("base_model.model.lm_head.modules_to_save.flora_v2.weight", False, False, False),  # an adapter's own name
    ("transformer.h.0.attn.c_attn.lora_dropout.default", False, False, False),  # a module, no tensor
])
def test_is_lora_name_reads_the_lora_part(name, any_part, a, b):
    assert (is_lora_name(name), is_lora_name(name, "A"), is_lora_name(name, "B")) == (any_part, a, b)


def test_is_lora_name_sorts_a_peft_model_s_parameters(base_model):
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import LoraLayer

    assert set(LORA_PARTS) == set(LoraLayer.adapter_layer_names)
    model = get_peft_model(base_model, LoraConfig(r=2, target_modules=["c_attn"], use_dora=True))
    lora = {n for n, p in model.named_parameters() if p.requires_grad}
    assert lora and {n for n, _ in model.named_parameters() if is_lora_name(n)} == lora
    assert all(is_lora_name(n, "B") == (".lora_B." in n) for n in lora)


def test_matches_target_follows_peft_rules():
    name = "transformer.h.0.attn.c_attn"
    assert matches_target(name, ["c_attn"]) and matches_target(name, ["attn.c_attn"])
    assert not matches_target(name, ["attn"]) and not matches_target(name, ["_attn"])
    assert matches_target(name, r".*\.c_attn") and not matches_target(name, r"c_attn")  # a regex: full match
    assert matches_target(name, "all-linear") and matches_target(name, None)
    assert unmatched_targets(["c_attn", "q_proj"], [name]) == ["q_proj"]


def test_matches_target_agrees_with_peft(base_model):
    from peft import LoraConfig
    from peft.tuners.tuners_utils import check_target_module_exists

    for targets in (["c_attn"], ["c_proj"], ["mlp.c_proj"], r".*h\.[01]\.attn\.c_attn"):
        config = LoraConfig(target_modules=targets)
        for name, _ in base_model.named_modules():
            if name:
                assert bool(check_target_module_exists(config, name)) == matches_target(name, targets), (targets, name)


def test_in_out_features(base_model):
    attn = base_model.transformer.h[0].attn.c_attn  # GPT-2's Conv1D: weight is (in, out)
    assert in_out_features(attn) == (attn.weight.shape[0], attn.weight.shape[1])
    assert in_out_features(torch.nn.Linear(3, 5)) == (3, 5)
    assert in_out_features(torch.nn.Embedding(7, 2)) == (7, 2)
    assert in_out_features(torch.nn.ReLU()) is None


def test_tensor_entries_drops_metadata():
    assert tensor_entries({"__metadata__": {"format": "pt"}, "a": {"dtype": "F32"}}) == {"a": {"dtype": "F32"}}
