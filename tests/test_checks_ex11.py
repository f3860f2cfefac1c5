"""Exercise 11 (merging and saving in practice): its checks accept right answers, and reject wrong ones with feedback
that says what is wrong. The compiled run's folder and the adapter to merge are made by the exercise's own recipes
(seeded shapes, secret weights) and snapshotted with ``record_given`` as the given cells do."""
from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch
from check_assertions import AlwaysEqual, fails, passes, scaled_lora_b
from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file, save_file

from course_utils import load_base_model, load_tokenizer
from course_utils.adapter_format import WEIGHTS_FILE
from course_utils.grading.evidence import evidence_root, record_given
from course_utils.grading.questions.ex11 import (
    COMPILED,
    MERGED_ATOL,
    compiled_plan,
    compiled_run,
    deploy_adapter,
    deploy_plan,
    four_bit_base,
)
from course_utils.learner import learner_seed
from course_utils.roundtrip import compare_logits
from course_utils.safe_ops import merge_to_folder
from course_utils.shipped import shipped_adapter

UNCOMPILED = {rf"^{COMPILED}": ""}


def load(folder, **kwargs):
    return PeftModel.from_pretrained(load_base_model(), folder, **kwargs)


def mapped(folder, **kwargs):
    return load(folder, key_mapping=UNCOMPILED, **kwargs)


def _stripped(folder):
    return {k.replace(f".{COMPILED}", ".", 1): v for k, v in load_file(folder / WEIGHTS_FILE).items()}


def _quiet(make):
    with pytest.warns(UserWarning, match="missing adapter keys"):
        return make()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compiled")
    return compiled_run(root / "compiled", "ci"), compiled_run(root / "again", "ci")


@pytest.fixture()
def compiled(runs):
    record_given("ex11_given_compiled", compiled=runs[0])   # as the given cell does
    return runs[0]


def test_ex11_q1_the_folder_is_seeded_compiled_and_its_weights_secret(runs):
    first, again = (load_file(f / WEIGHTS_FILE) for f in runs)
    assert sorted(first) == sorted(again)
    assert all(k.startswith(f"base_model.model.{COMPILED}transformer.") for k in first)
    assert not any(torch.equal(first[k], again[k]) for k in first if "lora_B" in k)
    assert len({str(compiled_plan(s)) for s in range(20)}) > 3   # the shape is per learner


def _resaved(folder, target):
    shutil.copytree(folder, target)
    save_file(_stripped(folder), target / WEIGHTS_FILE, metadata={"format": "pt"})
    return target


def _by_hand(folder, keep=lambda key: True):
    model = get_peft_model(load_base_model(), LoraConfig.from_pretrained(folder))
    set_peft_model_state_dict(model, {k: v for k, v in _stripped(folder).items() if keep(k)})
    return model.eval()


def test_ex11_q1_right_answers(compiled, tmp_path, capsys):
    passes("ex11_q1", capsys, repaired=mapped(compiled))
    passes("ex11_q1", capsys, repaired=load(_resaved(compiled, tmp_path / "fixed")))
    passes("ex11_q1", capsys, repaired=_by_hand(compiled))
    passes("ex11_q1", capsys, repaired=copy.deepcopy(mapped(compiled, is_trainable=True)))


def _bin_of(folder, target):
    model = mapped(folder)
    model.save_pretrained(target, safe_serialization=False)
    return load(target)


def _on_compiled_base(folder):
    return PeftModel.from_pretrained(torch.compile(load_base_model(), backend="eager"), folder)


WRONG_Q1 = [
    (lambda f, a, t: load_base_model(), "not a PeftModel"),
    (lambda f, a, t: _quiet(lambda: load(f)), "LoRA B matrices of `repaired` are zero"),
    (lambda f, a, t: copy.deepcopy(_quiet(lambda: load(f))), "LoRA B matrices of `repaired` are zero"),
    (lambda f, a, t: get_peft_model(load_base_model(), LoraConfig.from_pretrained(f)), "B matrices .* are zero"),
    (lambda f, a, t: _by_hand(f, keep=lambda k: ".h.0." in k), "does not hold the tensors saved in `compiled`"),
    (lambda f, a, t: scaled_lora_b(mapped(f), 1.01), "does not hold the tensors saved in `compiled`"),
    (lambda f, a, t: mapped(a), "does not hold the tensors saved in `compiled`"),    # the seed's recipe, run again
    (lambda f, a, t: _bin_of(a, t / "other"), "does not hold the tensors saved in `compiled`"),
    (lambda f, a, t: _on_compiled_base(f), "not the course's plain base model"),
    (lambda f, a, t: mapped(f).merge_and_unload(), "not a PeftModel"),
    (lambda f, a, t: AlwaysEqual(), "not a PeftModel"),
]


@pytest.mark.parametrize(("make", "pattern"), WRONG_Q1)
def test_ex11_q1_wrong_answers(make, pattern, compiled, runs, tmp_path):
    fails("ex11_q1", pattern, repaired=make(compiled, runs[1], tmp_path))


def test_ex11_q1_needs_the_given_cell_and_this_learners_folder(compiled, monkeypatch):
    repaired = mapped(compiled)
    monkeypatch.setenv("COURSE_LEARNER", "bob")   # ci's folder graded as bob's
    assert compiled_plan(learner_seed("bob")) != compiled_plan(learner_seed("ci"))
    record_given("ex11_given_compiled", compiled=compiled)
    fails("ex11_q1", "made for another learner", repaired=repaired)
    shutil.rmtree(evidence_root() / "ex11_given_compiled")
    fails("ex11_q1", "given cell `ex11_given_compiled` did not run", repaired=repaired)


# ---------------------------------------------------------------------------- Q2
@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    return deploy_adapter(root / "adapter", "ci"), deploy_adapter(root / "again", "ci")


@pytest.fixture()
def adapter(adapters):
    record_given("ex11_given_adapter", adapter=adapters[0])   # as the given cell does
    return adapters[0]


def _saved(model, target):
    model.save_pretrained(target)
    return target


def _fp32_merge(folder):
    return load(folder).merge_and_unload()


def _four_bit_merge(folder):
    with pytest.warns(UserWarning, match="4-bit linear"):
        return PeftModel.from_pretrained(four_bit_base(), folder).merge_and_unload()


def _bf16_merge(folder):
    return PeftModel.from_pretrained(load_base_model(dtype=torch.bfloat16), folder).merge_and_unload()


def _scaled_merge(folder, factor):
    model = load(folder)
    for module in model.modules():
        if hasattr(module, "scaling") and isinstance(module.scaling, dict) and "default" in module.scaling:
            module.scaling["default"] *= factor
    return model.merge_and_unload()


def test_ex11_q2_right_answers(adapter, tmp_path, capsys):
    passes("ex11_q2", capsys, merged_folder=_saved(_fp32_merge(adapter), tmp_path / "merged"))
    passes("ex11_q2", capsys, merged_folder=str(merge_to_folder(load(adapter), tmp_path / "m2", tmp_path / "a2")))
    safe = load(adapter).merge_and_unload(safe_merge=True)
    passes("ex11_q2", capsys, merged_folder=_saved(safe, tmp_path / "safe"))


def test_ex11_q2_a_bf16_merge_is_refused_and_why(adapter):
    """A bf16 merge is 16-bit rounding of every weight: its logits are over 100 times the tolerance off, further
    than a merge at 1.01 times the adapter's scale, so no tolerance could accept it and still refuse a wrong scale."""
    tok, reference = load_tokenizer(), _fp32_merge(adapter)
    bf16_gap = compare_logits(reference, _bf16_merge(adapter).float(), tok).max_abs_diff
    scale_gap = compare_logits(reference, _scaled_merge(adapter, 1.01), tok).max_abs_diff
    four_bit_gap = compare_logits(reference, _four_bit_merge(adapter).dequantize(dtype=torch.float32), tok).max_abs_diff
    assert 100 * MERGED_ATOL < scale_gap < bf16_gap < four_bit_gap


def _into_adapter_folder(folder, target):
    shutil.copytree(folder, target)
    return _saved(_fp32_merge(folder), target)


def _dequantized(folder):
    return _four_bit_merge(folder).dequantize(dtype=torch.float32)


def _config_edited(folder, target):
    _saved(_fp32_merge(folder), target)
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**config, "n_head": 2 * config["n_head"]}))
    return target


WRONG_Q2 = [
    (lambda f, a, t: _saved(_four_bit_merge(f), t), "4-bit checkpoint .*quantization_config"),
    (lambda f, a, t: _saved(_dequantized(f), t), "show 4-bit rounding"),
    (lambda f, a, t: _saved(load(f), t), "it is an adapter, not a merged model"),
    (lambda f, a, t: f, "it is an adapter, not a merged model"),
    (lambda f, a, t: _saved(load_base_model(), t), "the base model unmerged"),
    (lambda f, a, t: _saved(_fp32_merge(a), t), "not those of the adapter in `adapter`"),   # a rerun of the recipe
    (lambda f, a, t: _saved(_fp32_merge(shipped_adapter("spanish_sentiment")), t), "not those of the adapter"),
    (lambda f, a, t: _into_adapter_folder(f, t), "both adapter_config.json and a full model's config.json"),
    (lambda f, a, t: _saved(_scaled_merge(f, 2.0), t), "merged at 2 times its scale"),
    (lambda f, a, t: _saved(_bf16_merge(f), t), "weights are rounded"),
    (lambda f, a, t: _config_edited(f, t), "config.json describes another model \\(n_head differ"),
    (lambda f, a, t: t / "never_saved", "nothing was saved"),
    (lambda f, a, t: _fp32_merge(f), "should be the folder's path"),
    (lambda f, a, t: AlwaysEqual(), "should be the folder's path"),
]


@pytest.mark.parametrize(("make", "pattern"), WRONG_Q2)
def test_ex11_q2_wrong_answers(make, pattern, adapter, adapters, tmp_path):
    fails("ex11_q2", pattern, merged_folder=make(adapter, adapters[1], tmp_path / "merged"))


def test_ex11_q2_needs_the_given_cell_and_this_learners_folder(adapter, tmp_path, monkeypatch):
    merged = _saved(_fp32_merge(adapter), tmp_path / "merged")
    monkeypatch.setenv("COURSE_LEARNER", "ana")   # ci's folder graded as ana's, whose rank differs
    assert deploy_plan(learner_seed("ana"))["r"] != deploy_plan(learner_seed("ci"))["r"]
    record_given("ex11_given_adapter", adapter=adapter)
    fails("ex11_q2", "made for another learner", merged_folder=merged)
    shutil.rmtree(evidence_root() / "ex11_given_adapter")
    fails("ex11_q2", "given cell `ex11_given_adapter` did not run", merged_folder=merged)
