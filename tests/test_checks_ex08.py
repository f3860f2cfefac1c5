"""Exercise 8 (version drift, adapter names, state dicts): its checks accept right answers, and reject wrong ones
with feedback that says what is wrong. The renamed folder and the teammate's state_dict are made by the exercise's own
recipes (seeded layout and names, secret weights) and snapshotted with ``record_given`` as the given cells do."""
from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import torch
from check_assertions import AlwaysEqual, fails, passes, scaled_lora_b
from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file, save_file

from course_utils import load_base_model
from course_utils.adapter_format import WEIGHTS_FILE
from course_utils.grading.evidence import evidence_root, record_given
from course_utils.grading.questions.ex08 import (
    SERVING,
    STATE_FILE,
    renamed_colleague,
    renamed_plan,
    serving_model,
    teammate_state,
    transplant_plan,
)
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


# ---------------------------------------------------------------------------- Q2
NAME = transplant_plan(learner_seed("ci"))["name"]


@pytest.fixture(scope="module")
def states(tmp_path_factory):
    root = tmp_path_factory.mktemp("teammate")
    return teammate_state(root / "teammate", "ci"), teammate_state(root / "again", "ci")


@pytest.fixture()
def teammate(states):
    record_given("ex08_given_state", teammate=states[0])   # as the given cell does
    return states[0]


def _state(folder):
    return torch.load(Path(folder) / STATE_FILE, weights_only=True)


def _peft_names(folder, name=NAME):
    """The LoRA tensors of the file under peft's names (the adapter's name taken out)."""
    return {k.replace(f".{name}.", "."): v for k, v in _state(folder).items() if "lora_" in k}


def _transplanted(folder, model=None):
    model = model or serving_model("ci")
    set_peft_model_state_dict(model, _peft_names(folder), adapter_name=SERVING)
    return model


def _renamed_keys(folder):
    model = serving_model("ci")
    result = model.load_state_dict({k.replace(f".{NAME}.", f".{SERVING}."): v for k, v in _state(folder).items()},
                                   strict=False)
    assert not result.unexpected_keys
    return model


def test_ex08_q2_the_file_is_seeded_and_its_weights_secret(states):
    first, again = (_state(f) for f in states)
    assert sorted(first) == sorted(again) and any(f".{NAME}." in k for k in first)
    assert not any(torch.equal(first[k], again[k]) for k in first if "lora_B" in k)
    assert any(transplant_plan(s)["name"] != NAME for s in range(20))   # the name is per learner


def test_ex08_q2_right_answers(teammate, capsys):
    passes("ex08_q2", capsys, serving=_transplanted(teammate))
    passes("ex08_q2", capsys, serving=_renamed_keys(teammate))
    passes("ex08_q2", capsys, serving=copy.deepcopy(_transplanted(teammate)).requires_grad_(False))
    config = serving_model("ci").peft_config[SERVING]
    fresh = get_peft_model(load_base_model(), copy.deepcopy(config), adapter_name="old")
    fresh.add_adapter(SERVING, copy.deepcopy(config))
    fresh.set_adapter(SERVING)
    passes("ex08_q2", capsys, serving=_transplanted(teammate, fresh))   # another adapter beside it, not active


def _strict_false(folder):
    model = serving_model("ci")
    model.load_state_dict(_state(folder), strict=False)   # every LoRA key is unexpected: nothing loads
    return model


def _their_name(folder):
    model = get_peft_model(load_base_model(), serving_model("ci").peft_config[SERVING], adapter_name=NAME)
    model.load_state_dict(_state(folder))
    return model


def _beside(folder, activate):
    model = serving_model("ci")
    model.add_adapter(NAME, model.peft_config[SERVING])
    set_peft_model_state_dict(model, _peft_names(folder), adapter_name=NAME)
    if activate:
        model.set_adapter(NAME)
    return model


def _only_a(folder):
    model = serving_model("ci")
    set_peft_model_state_dict(model, {k: v for k, v in _peft_names(folder).items() if "lora_A" in k},
                              adapter_name=SERVING)
    return model


def _transplanted_onto_changed_base(folder):
    model = _transplanted(folder)
    with torch.no_grad():
        model.base_model.model.transformer.wte.weight.mul_(1.01)
    return model


def _names_left_in(folder):
    model = serving_model("ci")
    set_peft_model_state_dict(model, _state(folder), adapter_name=SERVING)   # the names left in: silently nothing
    return model


WRONG_Q2 = [
    (lambda t, a: serving_model("ci"), "LoRA B matrices of `serving` are zero.*name the adapter"),
    (lambda t, a: _strict_false(t), "LoRA B matrices of `serving` are zero"),
    (lambda t, a: _names_left_in(t), "LoRA B matrices of `serving` are zero"),
    (lambda t, a: _their_name(t), f"active adapter of `serving` is named '{NAME}'"),
    (lambda t, a: _beside(t, activate=True), f"active adapter of `serving` is named '{NAME}'"),
    (lambda t, a: _beside(t, activate=False), "LoRA B matrices of `serving` are zero"),
    (lambda t, a: _only_a(t), "LoRA B matrices of `serving` are zero"),
    (lambda t, a: _transplanted(a), "does not hold the teammate's tensors"),   # the same seed, run again
    (lambda t, a: scaled_lora_b(_transplanted(t), 1.01), "does not hold the teammate's tensors"),
    (lambda t, a: _transplanted_onto_changed_base(t), "base model is not the course's base model"),
    (lambda t, a: _transplanted(t).merge_and_unload(), "not a PeftModel"),
    (lambda t, a: load_base_model(), "not a PeftModel"),
    (lambda t, a: AlwaysEqual(), "not a PeftModel"),
]


@pytest.mark.parametrize(("make", "pattern"), WRONG_Q2)
def test_ex08_q2_wrong_answers(make, pattern, teammate, states):
    fails("ex08_q2", pattern, serving=make(teammate, states[1]))


def test_ex08_q2_needs_the_given_cell_and_this_learners_file(teammate, monkeypatch):
    serving = _transplanted(teammate)
    monkeypatch.setenv("COURSE_LEARNER", "bob")   # ci's file graded as bob's
    assert transplant_plan(learner_seed("bob"))["name"] != NAME
    record_given("ex08_given_state", teammate=teammate)
    fails("ex08_q2", "made for another learner", serving=serving)
    shutil.rmtree(evidence_root() / "ex08_given_state")
    fails("ex08_q2", "given cell `ex08_given_state` did not run", serving=serving)


def test_ex08_q2_a_file_saved_over_after_the_given_cell_fails(states, tmp_path):
    teammate = shutil.copytree(states[0], tmp_path / "teammate")
    record_given("ex08_given_state", teammate=teammate)
    torch.save(_state(states[1]), teammate / STATE_FILE)   # replaced by a rerun's, then "loaded from it"
    fails("ex08_q2", "does not hold the teammate's tensors", serving=_transplanted(teammate))
