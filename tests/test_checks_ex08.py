"""Exercise 8 (version drift, adapter names, state dicts): its check accepts right answers, and rejects wrong ones
with feedback that says what is wrong. The renamed folder is made by the exercise's own recipe (seeded layout, secret
weights) and snapshotted with ``record_given`` as the notebook's given cell does."""
from __future__ import annotations

import copy
import shutil

import pytest
import torch
from check_assertions import AlwaysEqual, fails, passes, scaled_lora_b
from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file, save_file

from course_utils import load_base_model
from course_utils.adapter_format import WEIGHTS_FILE
from course_utils.grading.evidence import evidence_root, record_given
from course_utils.grading.questions.ex08 import renamed_colleague, renamed_plan
from course_utils.learner import learner_seed

PREFIX = renamed_plan(learner_seed("ci"))["prefix"]
ANY_PREFIX = {r"^\w+\.transformer\.": "transformer."}


def load(folder, **kwargs):
    return PeftModel.from_pretrained(load_base_model(), folder, **kwargs)


def mapped(folder, **kwargs):
    return load(folder, key_mapping=ANY_PREFIX, **kwargs)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("theirs")
    return renamed_colleague(root / "theirs", "ci"), renamed_colleague(root / "again", "ci")


@pytest.fixture()
def theirs(folders):
    record_given("ex08_given_renamed", theirs=folders[0])   # as the given cell does
    return folders[0]


def _renamed_back(folder, target):
    shutil.copytree(folder, target)
    weights = load_file(folder / WEIGHTS_FILE)
    save_file({k.replace(f".{PREFIX}", ".", 1): v for k, v in weights.items()}, target / WEIGHTS_FILE,
              metadata={"format": "pt"})
    return target


def _by_hand(folder):
    model = get_peft_model(load_base_model(), LoraConfig.from_pretrained(folder))
    set_peft_model_state_dict(model, {k.replace(f".{PREFIX}", ".", 1): v
                                      for k, v in load_file(folder / WEIGHTS_FILE).items()})
    return model


def test_ex08_q1_the_folder_is_seeded_and_its_weights_secret(folders):
    first, again = (load_file(f / WEIGHTS_FILE) for f in folders)
    assert sorted(first) == sorted(again) and all(k.startswith(f"base_model.model.{PREFIX}") for k in first)
    assert not any(torch.equal(first[k], again[k]) for k in first if "lora_B" in k)


def test_ex08_q1_right_answers(theirs, tmp_path, capsys):
    passes("ex08_q1", capsys, repaired=mapped(theirs))
    passes("ex08_q1", capsys, repaired=load(theirs, adapter_name="theirs",
                                            key_mapping={rf"^{PREFIX}transformer\.": "transformer."}))
    passes("ex08_q1", capsys, repaired=load(_renamed_back(theirs, tmp_path / "fixed")))
    passes("ex08_q1", capsys, repaired=_by_hand(theirs))
    passes("ex08_q1", capsys, repaired=copy.deepcopy(mapped(theirs, is_trainable=True)))


def _quiet(make):
    with pytest.warns(UserWarning, match="missing adapter keys"):
        return make()


def _given_state(folder, other):
    fresh = get_peft_model(load_base_model(), LoraConfig.from_pretrained(folder))
    fresh.load_state_dict(mapped(other).state_dict())
    return fresh



def _changed_base(folder):
    model = mapped(folder)
    with torch.no_grad():
        model.base_model.model.transformer.wte.weight.mul_(1.01)
    return model


class Prefixed(torch.nn.Module):
    """The base under the colleague's prefix, so that their module paths match."""

    def __init__(self, base, prefix):
        super().__init__()
        setattr(self, prefix, base)
        self.prefix, self.config = prefix, base.config

    def forward(self, *args, **kwargs):
        return getattr(self, self.prefix)(*args, **kwargs)


WRONG_Q1 = [
    (lambda f, a: _quiet(lambda: load(f)), "LoRA B matrices of `repaired` are zero"),
    (lambda f, a: copy.deepcopy(_quiet(lambda: load(f))).requires_grad_(False), "LoRA B matrices .* are zero"),
    (lambda f, a: _quiet(lambda: load(f, key_mapping={r"^model\.transformer\.": "transformer."})),   # the lesson's
     "LoRA B matrices .* are zero"),
    (lambda f, a: get_peft_model(load_base_model(), LoraConfig.from_pretrained(f)), "LoRA B matrices .* are zero"),
    (lambda f, a: mapped(a), "does not hold the tensors saved in `theirs`"),   # the same seed, run again
    (lambda f, a: _given_state(f, a), "does not hold the tensors saved"),        # another model's state_dict
    (lambda f, a: scaled_lora_b(mapped(f), 1.01), "does not hold the tensors saved"),
    (lambda f, a: _changed_base(f), "base model is not the course's base model"),
    (lambda f, a: load_base_model(), "not a PeftModel"),
    (lambda f, a: mapped(f).merge_and_unload(), "not a PeftModel"),
    (lambda f, a: AlwaysEqual(), "not a PeftModel"),
    (lambda f, a: PeftModel.from_pretrained(Prefixed(load_base_model(), PREFIX.rstrip(".")), f),   # their layout
     f"a PeftModel around a model that is not the course's base model .*under `base_model.model.{PREFIX}"),
]


@pytest.mark.parametrize(("make", "pattern"), WRONG_Q1)
def test_ex08_q1_wrong_answers(make, pattern, theirs, folders):
    fails("ex08_q1", pattern, repaired=make(theirs, folders[1]))


def test_ex08_q1_needs_the_given_cell_and_this_learners_folder(theirs, monkeypatch):
    repaired = mapped(theirs)
    monkeypatch.setenv("COURSE_LEARNER", "bob")   # ci's folder graded as bob's
    record_given("ex08_given_renamed", theirs=theirs)
    fails("ex08_q1", "made for another learner", repaired=repaired)
    shutil.rmtree(evidence_root() / "ex08_given_renamed")
    fails("ex08_q1", "given cell `ex08_given_renamed` did not run", repaired=repaired)


def test_ex08_q1_the_folder_repaired_in_place_passes_and_saved_over_fails(folders, tmp_path, capsys):
    theirs = shutil.copytree(folders[0], tmp_path / "theirs")
    record_given("ex08_given_renamed", theirs=theirs)
    weights = load_file(theirs / WEIGHTS_FILE)   # the lesson's other fix: rename the keys once, save again
    save_file({k.replace(f".{PREFIX}", ".", 1): v for k, v in weights.items()}, theirs / WEIGHTS_FILE,
              metadata={"format": "pt"})
    passes("ex08_q1", capsys, repaired=load(theirs))
    get_peft_model(load_base_model(), LoraConfig.from_pretrained(theirs)).save_pretrained(theirs)
    fails("ex08_q1", "LoRA B matrices of `repaired` are zero", repaired=load(theirs))
