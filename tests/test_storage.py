import pytest
import torch
from transformers import GPT2Config

from course_utils import assets, storage
from course_utils.adapter_format import read_safetensors_header

TARGET_SETS = [["c_attn"], ["c_attn", "c_proj"], ["c_attn", "c_proj", "c_fc"]]


def _peft_count(model, r, targets):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=r, target_modules=targets)).get_nb_trainable_parameters()[0]


@pytest.mark.parametrize("targets", TARGET_SETS)
@pytest.mark.parametrize("r", [1, 8])
def test_analytic_count_equals_peft_on_the_tiny_model(targets, r):
    from course_utils import load_base_model

    assert storage.lora_parameter_count(load_base_model(), r, targets) == _peft_count(load_base_model(), r, targets)


def test_analytic_count_equals_peft_on_meta_gpt2():
    config = GPT2Config()
    for targets in TARGET_SETS:
        model = storage.as_model(config)
        assert next(model.parameters()).device.type == "meta"
        assert storage.lora_parameter_count(config, 8, targets) == _peft_count(model, 8, targets)


def _data_bytes(path):
    header = read_safetensors_header(path)
    return max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")


def test_bytes_match_real_files(base_model, tmp_path):
    from peft import LoraConfig, get_peft_model

    assert storage.full_model_bytes(base_model) == _data_bytes(assets.SHIPPED_MODEL / "model.safetensors")
    targets = ["c_attn", "c_proj", "c_fc"]
    expected = storage.adapter_bytes(base_model, 16, targets)
    wrapped = get_peft_model(base_model, LoraConfig(r=16, target_modules=targets))
    wrapped.save_pretrained(tmp_path)
    assert expected == _data_bytes(tmp_path / "adapter_model.safetensors")
    assert storage.adapter_bytes(wrapped, 16, targets) == expected  # an already wrapped model counts the same


def test_bytes_scale_with_rank_and_dtype():
    config = GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=100)
    one = storage.adapter_bytes(config, 1, ["c_attn"])
    assert one == 2 * (64 + 3 * 64) * 4
    assert storage.adapter_bytes(config, 8, ["c_attn"]) == 8 * one
    assert storage.adapter_bytes(config, 8, ["c_attn"], dtype=torch.bfloat16) == 4 * one
    assert storage.full_model_bytes(config) == sum(p.numel() for p in storage.as_model(config).parameters()) * 4


def test_bad_inputs_give_one_line_errors():
    config = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50)
    for call, kind, text in [
        (lambda: storage.lora_parameter_count(config, 0, ["c_attn"]), ValueError, "positive integer"),
        (lambda: storage.lora_parameter_count(config, 4, ["q_proj"]), ValueError, r"\['q_proj'\] not found"),
        (lambda: storage.lora_parameter_count(config, 4, []), ValueError, "targets is empty"),
        (lambda: storage.full_model_bytes("gpt2"), TypeError, "got str"),
    ]:
        with pytest.raises(kind, match=text) as e:
            call()
        assert "\n" not in str(e.value)


def test_rank_explorer_recomputes():
    config = GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=100)
    box = storage.rank_explorer(config)
    assert "course-rank-control" in box._dom_classes
    slider, checks, text = box.children
    before = text.value
    assert "adapter bytes" in before and f"{storage.adapter_bytes(config, 8, ['c_attn']):,}" in before
    slider.value = 16
    assert text.value != before and f"{storage.adapter_bytes(config, 16, ['c_attn']):,}" in text.value
    checks.children[2].value = True
    assert f"{storage.adapter_bytes(config, 16, ['c_attn', 'c_fc']):,}" in text.value
    for c in checks.children:
        c.value = False
    assert "Pick at least one" in text.value and "adapter bytes" in text.value
