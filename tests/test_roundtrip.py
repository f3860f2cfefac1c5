import pytest
import torch

from course_utils.roundtrip import LogitCheck, compare_logits, logits_of, sample_batch


def test_identical_models_match(base_model, tokenizer):
    from course_utils import load_base_model

    check = compare_logits(base_model, load_base_model(), tokenizer)
    assert check.ok and check.max_abs_diff == 0.0
    assert "same logits" in str(check)


def test_changed_weights_are_detected(base_model, tokenizer):
    from course_utils import load_base_model

    other = load_base_model()
    with torch.no_grad():
        other.transformer.h[0].attn.c_attn.weight[0, 0] += 0.5
    check = compare_logits(base_model, other, tokenizer)
    assert not check.ok and check.max_abs_diff > 1e-4
    assert "DIFFERENT logits" in str(check)


def test_shape_mismatch_is_one_clear_error(base_model, tokenizer):
    class Wide(torch.nn.Module):
        def forward(self, input_ids, attention_mask):
            return type("Out", (), {"logits": torch.zeros(*input_ids.shape, 7)})()

        def parameters(self):
            yield torch.zeros(1)

    with pytest.raises(ValueError, match="not built on the same base model"):
        compare_logits(base_model, Wide(), tokenizer)


def test_logits_of_restores_training_mode(base_model, tokenizer):
    base_model.train()
    out = logits_of(base_model, sample_batch(tokenizer))
    assert base_model.training and out.dtype == torch.float32 and out.shape[0] == 3


def test_logit_check_tolerance():
    assert LogitCheck(1e-6, 1e-5).ok and not LogitCheck(1e-3, 1e-5).ok


def test_sample_batch_leaves_the_tokenizer_alone(tokenizer):
    import copy

    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        batch = sample_batch(tokenizer)
        assert tokenizer.padding_side == "left"
    finally:
        tokenizer.padding_side = side
    mask = batch["attention_mask"]
    assert mask[:, 0].all() and not mask.all()  # right padding: every row starts with a real token
    no_pad = copy.deepcopy(tokenizer)
    no_pad.pad_token = None
    assert torch.equal(sample_batch(no_pad)["input_ids"], batch["input_ids"]) and no_pad.pad_token is None


def _lesson2_code() -> str:
    import json
    from pathlib import Path

    nb = json.loads((Path(__file__).parents[1] / "notebooks" / "02_reload_adapter.ipynb").read_text())
    return "\n\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


@pytest.mark.parametrize("name", ["logits_of", "compare_logits"])
def test_lesson2_defines_the_same_function(name):
    """d2l style: lesson 2 shows the function as a cell; the package's copy must be the same text."""
    import inspect

    from course_utils import roundtrip

    source = inspect.getsource(getattr(roundtrip, name)).strip()
    assert source in _lesson2_code(), f"lesson 2's {name} differs from course_utils/roundtrip.py's: copy one to the other"
