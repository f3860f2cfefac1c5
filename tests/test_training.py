import pytest
import torch

from course_utils.tasks import Example
from course_utils.training import (
    TrainResult,
    collate,
    encode_examples,
    train_demo_adapter,
)


def _lora_model(base_model, seed=0):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    return get_peft_model(base_model, LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], task_type="CAUSAL_LM"))


def _lora(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}


def test_training_moves_lora_b_and_lowers_the_loss(base_model, tokenizer):
    model = _lora_model(base_model)
    assert all(not v.any() for k, v in _lora(model).items() if "lora_B" in k)
    result = train_demo_adapter(model, tokenizer, steps=12, progress=False)
    assert isinstance(result, TrainResult) and result.steps == 12
    assert all(v.any() for k, v in _lora(model).items() if "lora_B" in k)
    assert result.final_loss < result.first_loss
    assert not model.training
    assert "12 steps: loss" in str(result)


def test_same_seed_same_weights_other_seed_other_weights(tokenizer):
    from course_utils import load_base_model

    runs = []
    threads = torch.get_num_threads()
    for seed, n in ((0, 1), (0, None), (1, 1)):
        model = _lora_model(load_base_model())
        train_demo_adapter(model, tokenizer, steps=3, seed=seed, progress=False, threads=n)
        assert torch.get_num_threads() == threads  # restored
        runs.append(_lora(model))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_a_model_without_adapter_is_refused(base_model, tokenizer):
    for p in base_model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="get_peft_model"):
        train_demo_adapter(base_model, tokenizer, steps=1, progress=False)


@pytest.mark.parametrize("kwargs", [{"steps": 0}, {"batch_size": 0}])
def test_bad_sizes_are_refused(base_model, tokenizer, kwargs):
    with pytest.raises(ValueError, match="at least 1"):
        train_demo_adapter(_lora_model(base_model), tokenizer, progress=False, **kwargs)


def test_loss_only_on_the_answer(tokenizer):
    rows = encode_examples(tokenizer, [Example("Reseña: x\nSentimiento:", " positivo"), Example("a", " b")])
    batch = collate(rows, tokenizer.pad_token_id)
    for (ids, mask), labels, att in zip(rows, batch["labels"], batch["attention_mask"]):
        assert att.sum() == len(ids)
        assert labels[:len(ids)].tolist() == [t if m else -100 for t, m in zip(ids, mask)]
        assert (labels[len(ids):] == -100).all()
        assert ids[-1] == tokenizer.eos_token_id and mask[-1] == 1 and mask[0] == 0


def test_progress_bar_text_has_no_timing(base_model, tokenizer, capsys, monkeypatch):
    import tqdm
    import tqdm.auto

    monkeypatch.setattr(tqdm.auto, "tqdm", tqdm.tqdm)  # the terminal bar renders the notebook bar's format
    train_demo_adapter(_lora_model(base_model), tokenizer, steps=2)
    final = capsys.readouterr().err.split("\r")[-1].strip()
    assert final.startswith("training on spanish_sentiment: 100%") and final.endswith("| 2/2"), final


def test_demo_batches_are_seeded_and_refuse_bad_input_at_once(tokenizer):
    from course_utils.training import demo_batches

    first, again = list(demo_batches(tokenizer, steps=3, seed=0)), list(demo_batches(tokenizer, steps=3, seed=0))
    other = list(demo_batches(tokenizer, steps=3, seed=1))
    assert len(first) == 3 and set(first[0]) == {"input_ids", "attention_mask", "labels"}
    assert all(torch.equal(a[k], b[k]) for a, b in zip(first, again) for k in a)
    assert not torch.equal(first[0]["input_ids"], other[0]["input_ids"])
    with pytest.raises(ValueError, match="at least 1"):
        demo_batches(tokenizer, steps=0)  # raised by the call, not at the first batch


def test_train_demo_adapter_is_train_loop_on_demo_batches(tokenizer):
    """Lesson 1 shows train_loop and says train_demo_adapter runs it: same losses, same weights."""
    from course_utils import load_base_model
    from course_utils.training import demo_batches, train_loop

    helper, shown = _lora_model(load_base_model()), _lora_model(load_base_model())
    result = train_demo_adapter(helper, tokenizer, steps=3, seed=2, progress=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what train_demo_adapter uses
    try:
        losses = train_loop(shown, demo_batches(tokenizer, steps=3, seed=2))
    finally:
        torch.set_num_threads(threads)
    assert (result.first_loss, result.final_loss) == (losses[0], losses[-1])
    assert all(torch.equal(a, b) for a, b in zip(_lora(helper).values(), _lora(shown).values()))


def test_lesson1_shows_the_loop_train_demo_adapter_runs():
    import inspect
    import json
    from pathlib import Path

    from course_utils import training

    nb = json.loads((Path(__file__).parents[1] / "notebooks" / "01_save_adapter.ipynb").read_text())
    code = "\n\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert inspect.getsource(training.train_loop).strip() in code, "lesson 1's train_loop differs from training.py's"
