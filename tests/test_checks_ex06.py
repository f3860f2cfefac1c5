"""Exercise 6 (new tokens): its check accepts right answers, and rejects wrong ones with feedback that says what
is wrong. The given folder is made by the exercise's own recipe (seeded tokens, secret weights) and snapshotted with
``record_given`` as the notebook's given cell does."""
from __future__ import annotations

import copy
import shutil

import pytest
import torch
from check_assertions import AlwaysEqual, fails, passes, scaled_lora_b
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

from course_utils import load_base_model, shipped_adapter
from course_utils.adapter_format import WEIGHTS_FILE
from course_utils.grading.evidence import evidence_root, record_given
from course_utils.grading.questions.ex06 import entity_colleague


def resized(folder, rows=None):
    base = load_base_model()
    base.resize_token_embeddings(rows or len(AutoTokenizer.from_pretrained(folder)))
    return base


def load(folder, **kwargs):
    return PeftModel.from_pretrained(resized(folder), folder, **kwargs)


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokens")
    return entity_colleague(root / "ent_adapter", "ci"), entity_colleague(root / "again", "ci")


@pytest.fixture()
def shared(tokens):
    record_given("ex06_given_tokens", shared=tokens[0])   # as the given cell does
    return tokens[0]


def test_ex06_q1_the_folder_is_seeded_and_its_weights_secret(tokens):
    first, again = tokens
    assert AutoTokenizer.from_pretrained(first).get_vocab() == AutoTokenizer.from_pretrained(again).get_vocab()
    assert not torch.equal(load_file(first / WEIGHTS_FILE)["base_model.model.transformer.wte.weight"],
                           load_file(again / WEIGHTS_FILE)["base_model.model.transformer.wte.weight"])


def test_ex06_q1_right_answers(shared, tmp_path, capsys):
    passes("ex06_q1", capsys, fixed=load(shared))
    passes("ex06_q1", capsys, fixed=load(shared, adapter_name="ent", is_trainable=True))
    shutil.copytree(shared, tmp_path / "copy")
    passes("ex06_q1", capsys, fixed=load(tmp_path / "copy"))
    passes("ex06_q1", capsys, fixed=copy.deepcopy(load(shared)).requires_grad_(False))


def _fresh(base):
    torch.manual_seed(0)
    return get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["c_attn"], fan_in_fan_out=True,
                                           modules_to_save=["wte"], init_lora_weights=False))


def _stripped(shared, target):
    """The folder as a save that lost the resized embedding ("auto" guessed wrong) would leave it."""
    shutil.copytree(shared, target)
    weights = load_file(target / WEIGHTS_FILE)
    save_file({k: v for k, v in weights.items() if k not in ("base_model.model.transformer.wte.original_module.weight",
                                                             "base_model.model.lm_head.weight")},
              target / WEIGHTS_FILE, metadata={"format": "pt"})
    return target



def _not_active(shared):
    other = PeftModel.from_pretrained(resized(shared), shipped_adapter("spanish_sentiment"))
    other.load_adapter(shared, adapter_name="ent")   # loaded but never made active
    return other


def _state_of_rerun(shared, again):
    fresh = _fresh(resized(shared))
    fresh.load_state_dict(load(again).state_dict())
    return fresh


WRONG_Q1 = [
    (lambda s, a, t: _fresh(load_base_model()), "1024 rows; the tokenizer shipped in `shared` has"),
    (lambda s, a, t: _fresh(resized(s)), "does not hold the weights saved in `shared`"),
    (lambda s, a, t: load_base_model(), "not a PeftModel"),
    (lambda s, a, t: load(s).merge_and_unload(), "not a PeftModel"),
    (lambda s, a, t: load(a), "does not hold the weights saved in `shared`"),   # the same seed, run again
    (lambda s, a, t: copy.deepcopy(load(a)).requires_grad_(False), "does not hold the weights"),
    (lambda s, a, t: _state_of_rerun(s, a), "does not hold the weights"),   # another model's state_dict
    (lambda s, a, t: load(_stripped(s, t / "stripped")), "does not hold the weights .*embedding rows"),
    (lambda s, a, t: scaled_lora_b(load(s), 2), "does not hold the weights"),
    (lambda s, a, t: _not_active(s), "does not hold the weights"),
    (lambda s, a, t: AlwaysEqual(), "not a PeftModel"),
]


@pytest.mark.parametrize(("make", "pattern"), WRONG_Q1)
def test_ex06_q1_wrong_answers(make, pattern, shared, tokens, tmp_path):
    fails("ex06_q1", pattern, fixed=make(shared, tokens[1], tmp_path))


def test_ex06_q1_needs_the_given_cell_and_this_learners_folder(shared, monkeypatch):
    fixed = load(shared)
    monkeypatch.setenv("COURSE_LEARNER", "bob")   # ci's folder graded as bob's
    record_given("ex06_given_tokens", shared=shared)
    fails("ex06_q1", "made for another learner", fixed=fixed)
    shutil.rmtree(evidence_root() / "ex06_given_tokens")
    fails("ex06_q1", "given cell `ex06_given_tokens` did not run", fixed=fixed)


def test_ex06_q1_a_folder_saved_over_after_the_given_cell_fails(tokens, tmp_path):
    shared = shutil.copytree(tokens[0], tmp_path / "shared")
    record_given("ex06_given_tokens", shared=shared)
    base = resized(shared)
    _fresh(base).save_pretrained(shared)   # saved over the colleague's folder, then "loaded from it"
    fails("ex06_q1", "does not hold the weights saved in `shared`", fixed=load(shared))
