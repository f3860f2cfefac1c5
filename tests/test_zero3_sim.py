"""course_utils/zero3_sim.py (lesson 9): the simulated ZeRO-3 partition empties every parameter, its gathered state
dict is the model's own, the save is empty without it and complete with it, and bad input gets a one-line error."""
import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from course_utils import compare_logits, gathered_state_dict, load_base_model, load_tokenizer, shipped_adapter, simulate_zero3


def test_partition_empties_every_parameter_and_the_gather_gives_them_back():
    model = PeftModel.from_pretrained(load_base_model(), shipped_adapter("english_ner"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    label = simulate_zero3(model, ranks=3)
    assert label.startswith("SIMULATED ZeRO-3") and "3 slices" in label
    assert all(p.shape == (0,) for p in model.parameters())
    gathered = gathered_state_dict(model)
    assert gathered.keys() == before.keys()
    assert all(torch.equal(gathered[k], before[k]) for k in before)
    assert all(p.shape == (0,) for p in model.parameters())   # the model itself stays partitioned


def test_the_save_is_empty_without_the_gathered_weights_and_complete_with_them(tmp_path):
    folder = shipped_adapter("english_ner")
    model = PeftModel.from_pretrained(load_base_model(), folder)
    simulate_zero3(model)
    with pytest.warns(UserWarning, match="invalid shape"):
        model.save_pretrained(tmp_path / "naive")
    assert all(v.numel() == 0 for v in load_file(tmp_path / "naive" / "adapter_model.safetensors").values())
    model.save_pretrained(tmp_path / "fixed", state_dict=gathered_state_dict(model))
    fixed = PeftModel.from_pretrained(load_base_model(), tmp_path / "fixed")
    reference = PeftModel.from_pretrained(load_base_model(), folder)
    assert compare_logits(reference, fixed, load_tokenizer()).max_abs_diff == 0.0


@pytest.mark.parametrize("ranks", [0, -1, 1.5, True, "2"])
def test_bad_ranks_are_refused(ranks):
    with pytest.raises(ValueError, match="ranks must be a whole number"):
        simulate_zero3(load_base_model(), ranks=ranks)


def test_twice_or_never_partitioned_is_refused():
    model = load_base_model()
    with pytest.raises(ValueError, match="simulate_zero3\\(model\\) was not called"):
        gathered_state_dict(model)
    simulate_zero3(model)
    with pytest.raises(ValueError, match="already partitioned"):
        simulate_zero3(model)
