import torch


def test_base_model_is_gpt2_architecture(base_model):
    names = {n.split(".")[-1] for n, _ in base_model.named_modules()}
    assert {"c_attn", "c_proj", "c_fc"} <= names
    assert type(base_model).__name__ == "GPT2LMHeadModel"
    assert not base_model.training


def test_base_model_dtype(monkeypatch):
    from course_utils import load_base_model

    model = load_base_model(dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_tokenizer_round_trip(tokenizer):
    text = "Reseña: El café fue excelente."
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    assert tokenizer.pad_token is not None


def test_lora_on_c_attn_applies_unchanged(base_model):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(base_model, LoraConfig(r=8, lora_alpha=16, target_modules=["c_attn"]))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    cfg = base_model.config
    assert trainable == cfg.n_layer * (cfg.n_embd * 8 + 8 * 3 * cfg.n_embd)


REAL_CALL = "AutoModelForCausalLM.from_pretrained(course_model(), dtype=torch.float32).eval()"


def test_load_base_model_is_the_call_lessons_1_to_3_show():
    """Lessons 1-3 show the real from_pretrained call once, then use load_base_model(): they must agree."""
    import json
    from pathlib import Path

    from transformers import AutoModelForCausalLM

    from course_utils import course_model, load_base_model

    for name in ("01_save_adapter", "02_reload_adapter", "03_gotchas_and_errors"):
        nb = json.loads((Path(__file__).parents[1] / "notebooks" / f"{name}.ipynb").read_text())
        assert any(REAL_CALL in "".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"), name
    shown = AutoModelForCausalLM.from_pretrained(course_model(), dtype=torch.float32).eval()  # REAL_CALL
    helper = load_base_model()
    assert not shown.training and not helper.training
    assert shown.state_dict().keys() == helper.state_dict().keys()
    assert all(torch.equal(v, helper.state_dict()[k]) for k, v in shown.state_dict().items())
