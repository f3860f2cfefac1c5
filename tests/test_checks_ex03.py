"""Exercise 3 (gotchas and errors): its checks accept right answers, and reject wrong
ones with feedback that says what is wrong.
Real objects built from the shipped tiny model; each question has right variants and wrong answers.
The given folders are made per learner (``COURSE_LEARNER``) and snapshotted as the given cells do."""
from __future__ import annotations

import copy
import json
import math
import os
import shutil

import numpy as np
import pytest
import torch
from check_assertions import AlwaysEqual, fails, passes
from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file, save_file

from course_utils import load_base_model, shipped_adapter
from course_utils.grading.evidence import evidence_root, record_given
from course_utils.grading.questions.ex03 import (
    SENT_ID,
    SHARED_ID,
    SPANISH_NAMES,
    broken_folder,
    colleague_share,
    sent_spec,
    shared_name,
    tutorial_config,
    tutorial_spec,
    two_adapters,
)
from course_utils.learner import learner_seed

# Learners whose Q4 folder has each fault (ci's is "targets"); asserted below, so a change of recipe shows.
FAULT_LEARNERS = {"rank": "l0", "weights_name": "l1", "targets": "ci", "peft_type": "l4"}


def lora(r=8, targets=("c_attn",), init=False, name="default", seed=0):
    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(targets), init_lora_weights=init)
    return get_peft_model(load_base_model(), config, adapter_name=name)


def reload(folder, **kwargs):
    return PeftModel.from_pretrained(load_base_model(), str(folder), **kwargs)


def _without_record(given_id):
    """Hide a given cell's snapshot (as when the given cell was never run); returns a function that restores it."""
    record = evidence_root() / given_id
    hidden = record.with_name(given_id + ".hidden")
    shutil.rmtree(hidden, ignore_errors=True)
    record.rename(hidden)
    return lambda: hidden.rename(record)


# ---------------------------------------------------------------------------------------- Q1
@pytest.fixture()
def shared(tmp_path):
    """The colleague's shared folder of learner ci, snapshotted as its given cell does."""
    path = colleague_share(tmp_path / "shared", "ci")
    record_given(SHARED_ID, shared=path)
    return path


def _sub(shared):
    return shared / shared_name(learner_seed("ci"))


def test_ex03_q1_right(shared, capsys):
    name = shared_name(learner_seed("ci"))
    passes("ex03_q1", capsys, fixed=reload(_sub(shared)), shared=shared)
    passes("ex03_q1", capsys, fixed=reload(shared, subfolder=name, adapter_name=name), shared=shared)
    passes("ex03_q1", capsys, fixed=reload(_sub(shared), is_trainable=True), shared=shared)  # training not excluded
    two = PeftModel.from_pretrained(load_base_model(), shipped_adapter("spanish_sentiment"))
    two.load_adapter(str(_sub(shared)), adapter_name="colleague")
    two.set_adapter("colleague")
    passes("ex03_q1", capsys, fixed=two, shared=shared)
    plain = load_base_model()
    plain.load_adapter(str(_sub(shared)))  # transformers' own loader, on a plain base
    passes("ex03_q1", capsys, fixed=plain, shared=shared)
    passes("ex03_q1", capsys, fixed=_plain(_sub(shared), adapter_name="colleague"), shared=shared)
    round_trip = reload(_sub(shared))
    round_trip.merge_adapter()
    round_trip.unmerge_adapter()  # not bit-exact (lesson 3): within 1e-4
    passes("ex03_q1", capsys, fixed=round_trip, shared=shared)
    merged = reload(_sub(shared))
    merged.merge_adapter()  # merged for inference: the outputs are the adapter's
    passes("ex03_q1", capsys, fixed=merged, shared=shared)


def _plain(path, **kwargs):
    model = load_base_model()
    model.load_adapter(str(path), **kwargs)
    return model


def _plain_altered(shared):
    model = _plain(_sub(shared))
    with torch.no_grad():
        model.transformer.h[1].attn.c_attn.base_layer.weight.mul_(2)
    return model


def _plain_alpha_x4(shared):
    config = LoraConfig.from_pretrained(str(_sub(shared)))
    config.lora_alpha *= 4
    return _plain(_sub(shared), peft_config=config)


def _plain_rslora(shared):
    config = LoraConfig.from_pretrained(str(_sub(shared)))
    config.use_rslora = True
    return _plain(_sub(shared), peft_config=config)


def _switched_off(shared):
    model = reload(_sub(shared))
    model.base_model.disable_adapter_layers()
    return model


def _plain_switched_off(shared):
    model = _plain(_sub(shared))
    model.disable_adapters()
    return model


def _scaled_to_zero(model, only=None):
    for module in model.modules():
        if isinstance(module, LoraLayer):
            for adapter in [only] if only else list(module.scaling):
                module.set_scale(adapter, 0.0)
    return model


def _recipe_again(tmp_path):
    """The same recipe run again: another folder, other weights."""
    return colleague_share(tmp_path / "again", "ci") / shared_name(learner_seed("ci"))


def _altered_base(shared):
    model = reload(_sub(shared))
    with torch.no_grad():
        model.base_model.model.transformer.wte.weight.mul_(1.5)
    return model


def _fresh_with_state(tmp_path):
    fresh = lora(r=8, targets=("c_attn",), init=True)
    fresh.load_state_dict(reload(_recipe_again(tmp_path)).state_dict())
    return fresh


def _other_active(shared):
    model = reload(_sub(shared), adapter_name="colleague")
    model.load_adapter(str(shipped_adapter("spanish_sentiment")), adapter_name="other")
    model.set_adapter("other")
    return model


WRONG_Q1 = {
    "recipe run again": (lambda s, t: reload(_recipe_again(t)), "does not hold the weights saved in `shared`"),
    "deepcopy of a recipe model": (lambda s, t: copy.deepcopy(reload(_recipe_again(t), is_trainable=True)),
                                   "does not hold the weights saved in `shared`"),
    "fresh model given another's state_dict": (lambda s, t: _fresh_with_state(t), "does not hold the weights"),
    "base model": (lambda s, t: load_base_model(), "not a PeftModel"),
    "merged": (lambda s, t: reload(_sub(s)).merge_and_unload(), "not a PeftModel"),
    "shipped adapter": (lambda s, t: reload(shipped_adapter("spanish_sentiment")), "does not hold the weights"),
    "new zero adapter": (lambda s, t: lora(init=True), "does not hold the weights"),
    "other adapter active": (lambda s, t: _other_active(s), "does not hold the weights"),
    "base weights changed": (lambda s, t: _altered_base(s), "different logits"),
    "a name": (lambda s, t: "sentiment", "is a str, not a PeftModel"),
    "transformers loader, recipe folder": (lambda s, t: _plain(_recipe_again(t)), "does not hold the weights"),
    "transformers loader, base changed": (lambda s, t: _plain_altered(s), "not the course's own"),
    "always equal": (lambda s, t: AlwaysEqual(), "not a PeftModel"),
    "transformers loader, lora_alpha x4": (lambda s, t: _plain_alpha_x4(s), "its lora_alpha is 64.*says 16"),
    "transformers loader, rslora": (lambda s, t: _plain_rslora(s), "its use_rslora is True"),
    "adapter layers switched off": (lambda s, t: _switched_off(s), "LoRA layers switched off"),
    "transformers loader, disable_adapters": (lambda s, t: _plain_switched_off(s), "LoRA layers switched off"),
    "set_scale(0)": (lambda s, t: _scaled_to_zero(reload(_sub(s))), "scaled by 0, not by lora_alpha/r"),
    "transformers loader, set_scale(0)": (lambda s, t: _scaled_to_zero(_plain(_sub(s))), "scaled by 0"),
}


@pytest.mark.parametrize("case", sorted(WRONG_Q1))
def test_ex03_q1_wrong(case, shared, tmp_path):
    make, message = WRONG_Q1[case]
    fails("ex03_q1", message, fixed=make(shared, tmp_path), shared=shared)


def test_ex03_q1_folder_replaced_after_given(shared, tmp_path):
    """Saving new weights over `shared` after its given cell, then loading them, fails: the snapshot counts."""
    colleague_share(shared, "ci")
    fails("ex03_q1", "does not hold the weights saved in `shared`", fixed=reload(_sub(shared)), shared=shared)


def test_ex03_q1_without_record(shared):
    restore = _without_record(SHARED_ID)
    try:
        fails("ex03_q1", "no record of the folder `shared`", fixed=reload(_sub(shared)), shared=shared)
    finally:
        restore()


# ---------------------------------------------------------------------------------------- Q2
def _rank_alpha():
    return tutorial_spec(learner_seed("ci"))


def _tutorial_retargeted():
    config = copy.deepcopy(tutorial_config("ci"))
    config.target_modules = {"c_attn"}
    return config


def test_ex03_q2_right(capsys):
    r, alpha = _rank_alpha()
    passes("ex03_q2", capsys, config=LoraConfig(r=r, lora_alpha=alpha, target_modules=["c_attn"]))
    passes("ex03_q2", capsys, config=LoraConfig(r=np.int64(r), lora_alpha=alpha, target_modules=r".*\.c_attn"))
    passes("ex03_q2", capsys, config=_tutorial_retargeted())
    passes("ex03_q2", capsys, config=LoraConfig(r=r, lora_alpha=alpha, target_modules=["c_attn"],
                                                init_lora_weights="gaussian", task_type="CAUSAL_LM"))
    passes("ex03_q2", capsys, config=LoraConfig(r=4, lora_alpha=alpha, rank_pattern={"c_attn": r},
                                                alpha_pattern={"c_attn": alpha}, target_modules=["attn.c_attn"]))


def _wrong_q2():
    r, alpha = _rank_alpha()
    other = 16 if r != 16 else 8

    def cfg(**kw):
        return LoraConfig(**{"r": r, "lora_alpha": alpha, "target_modules": ["c_attn"], **kw})

    return {
        "tutorial's targets": (cfg(target_modules=["qkv_proj"]), "still fails .*qkv_proj"),
        "q/k/v and output projection": (cfg(target_modules=["c_attn", "c_proj"]), r"lands on \['c_attn', 'c_proj'\]"),
        "layer 0 only": (cfg(target_modules=["h.0.attn.c_attn"]), "1 of the 4 layers"),
        "two layers": (cfg(layers_to_transform=[0, 1]), "2 of the 4 layers"),
        "a dict": ({"r": r, "target_modules": ["c_attn"]}, "not a LoraConfig"),
        "lesson's rank": (cfg(r=other), f"rank other than the tutorial's {r}"),
        "layer 0 rank 4 by rank_pattern": (cfg(rank_pattern={"h.0.attn.c_attn": 4}), r"1 of the 4 .*h\.0.*r=4"),
        "every layer rank 16 by rank_pattern": (cfg(rank_pattern={"c_attn": other}), f"4 of the 4 .*r={other}"),
        "lora_alpha 0": (cfg(lora_alpha=0), f"lora_alpha=0, not the tutorial's {alpha}"),
        "default lora_alpha": (LoraConfig(r=r, target_modules=["c_attn"]), "lora_alpha=8, not the tutorial's")
        if alpha != 8 else (cfg(lora_alpha=4), "lora_alpha=4, not the tutorial's"),
        "alpha_pattern": (cfg(alpha_pattern={"h.2.attn.c_attn": 2 * alpha}), "1 of the 4 .*alpha_pattern"),
        "rslora": (cfg(use_rslora=True), "use_rslora"),
        "bias trained": (cfg(bias="lora_only"), "tensor.s. would train"),
        "modules_to_save": (cfg(modules_to_save=["lm_head"]), "would train"),
        "dora": (cfg(use_dora=True), "DoRA"),
        "target as one string": (cfg(target_modules="c_attn"), "still fails"),
        "lora_bias": (cfg(lora_bias=True), "sets lora_bias, which adds a trainable bias"),
        "rslora, alpha rescaled": (cfg(use_rslora=True, lora_alpha=alpha / math.sqrt(r)), "use_rslora"),
        "alpha doubled": (cfg(lora_alpha=2 * alpha), f"lora_alpha={2 * alpha}, not the tutorial's {alpha}"),
        "activated LoRA": (cfg(alora_invocation_tokens=[50256]), "alora_invocation_tokens.*activated LoRA"),
        "pissa": (cfg(init_lora_weights="pissa"), "'pissa', which rewrites the base"),
        "olora": (cfg(init_lora_weights="olora"), "'olora', which rewrites the base"),
        "inference mode": (cfg(inference_mode=True), "inference_mode=True: nothing would train"),
        "arrow": (cfg(arrow_config={}), "sets arrow_config"),
    }


@pytest.mark.parametrize("case", sorted(_wrong_q2()))
def test_ex03_q2_wrong(case):
    config, message = _wrong_q2()[case]
    fails("ex03_q2", message, config=config)


def test_ex03_q2_numbers_of_another_learner_fail(monkeypatch, capsys):
    r, alpha = _rank_alpha()
    assert tutorial_spec(learner_seed("bob")) != (r, alpha)
    monkeypatch.setenv("COURSE_LEARNER", "bob")
    fails("ex03_q2", "tutorial", config=LoraConfig(r=r, lora_alpha=alpha, target_modules=["c_attn"]))
    r, alpha = tutorial_spec(learner_seed("bob"))
    passes("ex03_q2", capsys, config=LoraConfig(r=r, lora_alpha=alpha, target_modules=["c_attn"]))


# ---------------------------------------------------------------------------------------- Q3
def _two(first="english_ner", second="spanish_sentiment", names=None):
    """A base model with two shipped adapters, loaded under ``names`` (default: the adapters' own names)."""
    names = names or (first, second)
    model = PeftModel.from_pretrained(load_base_model(), shipped_adapter(first), adapter_name=names[0])
    model.load_adapter(shipped_adapter(second), adapter_name=names[1])
    return model


def test_ex03_q3_given(capsys):
    two = two_adapters("ci")
    fails("ex03_q3", "does not hold the Spanish", spanish_model=two)
    two.set_adapter(next(n for n in two.peft_config if n in SPANISH_NAMES))
    passes("ex03_q3", capsys, spanish_model=two)


def test_ex03_q3(capsys):
    good = _two()
    good.set_adapter("spanish_sentiment")
    passes("ex03_q3", capsys, spanish_model=good)
    renamed = _two()
    renamed.load_adapter(shipped_adapter("spanish_sentiment"), adapter_name="spanish")
    renamed.set_adapter("spanish")
    passes("ex03_q3", capsys, spanish_model=renamed)
    fails("ex03_q3", "active adapter 'english_ner' does not hold the Spanish", spanish_model=_two())
    alone = PeftModel.from_pretrained(load_base_model(), shipped_adapter("spanish_sentiment"),
                                      adapter_name="spanish_sentiment")
    fails("ex03_q3", "holds english_ner's weights: keep it loaded", spanish_model=alone)
    swapped = _two("english_ner", "english_ner", names=("english_ner", "spanish_sentiment"))
    swapped.set_adapter("spanish_sentiment")
    fails("ex03_q3", "does not hold the Spanish", spanish_model=swapped)
    deleted = _two()
    deleted.set_adapter("spanish_sentiment")
    deleted.delete_adapter("english_ner")
    fails("ex03_q3", "keep it loaded", spanish_model=deleted)
    both_active = _two()
    both_active.base_model.set_adapter(["english_ner", "spanish_sentiment"])
    fails("ex03_q3", "2 active adapters", spanish_model=both_active)
    fails("ex03_q3", "not a PeftModel", spanish_model="spanish_sentiment")
    fails("ex03_q3", "not a PeftModel", spanish_model=load_base_model())
    fails("ex03_q3", "not a PeftModel", spanish_model=AlwaysEqual())
    merged = _two()
    merged.set_adapter("spanish_sentiment")
    fails("ex03_q3", "not a PeftModel", spanish_model=merged.merge_and_unload())
    round_trip = _two()
    round_trip.set_adapter("spanish_sentiment")
    round_trip.merge_adapter()
    round_trip.unmerge_adapter()  # not bit-exact (lesson 3): within 1e-4
    passes("ex03_q3", capsys, spanish_model=round_trip)
    merged_active = _two()
    merged_active.set_adapter("spanish_sentiment")
    merged_active.merge_adapter()  # merged for inference: the outputs are the Spanish adapter's
    passes("ex03_q3", capsys, spanish_model=merged_active)
    off = _two()
    off.set_adapter("spanish_sentiment")
    off.base_model.disable_adapter_layers()
    fails("ex03_q3", "LoRA layers switched off", spanish_model=off)
    silenced = _two()
    silenced.set_adapter("spanish_sentiment")
    fails("ex03_q3", "'spanish_sentiment' is scaled by 0", spanish_model=_scaled_to_zero(silenced, "spanish_sentiment"))
    ner_merged = _two()
    ner_merged.merge_adapter()
    ner_merged.set_adapter("spanish_sentiment")  # peft unmerges before it switches
    passes("ex03_q3", capsys, spanish_model=ner_merged)
    half = _two()
    half.set_adapter("spanish_sentiment")
    fails("ex03_q3", r"parameters of `spanish_model` are \{'bfloat16'.*needs no cast",
          spanish_model=half.to(torch.bfloat16))
    fresh = _two()
    fresh.add_adapter("spanish", LoraConfig(r=8, target_modules=["c_attn"]))
    fresh.set_adapter("spanish")
    fails("ex03_q3", "does not hold the Spanish", spanish_model=fresh)


# ---------------------------------------------------------------------------------------- Q4
def _sent(tmp_path, learner, monkeypatch):
    """``learner``'s broken folder, snapshotted as its given cell does, with the check acting as that learner."""
    monkeypatch.setenv("COURSE_LEARNER", learner)
    sent = broken_folder(tmp_path / "sent", learner)
    record_given(SENT_ID, sent=sent)
    return sent


def _repair(sent, dest, learner, **changes):
    """The repair the fault needs (config fields from the colleague's training, the weights file's own name)."""
    spec = sent_spec(learner_seed(learner))
    shutil.copytree(sent, dest)
    for weights in dest.glob("*.safetensors"):
        weights.rename(dest / "adapter_model.safetensors")
    config = json.loads((dest / "adapter_config.json").read_text())
    config.update({"r": spec["rank"], "target_modules": list(spec["targets"]), "peft_type": "LORA", **changes})
    (dest / "adapter_config.json").write_text(json.dumps(config))
    return dest


def test_ex03_q4_fault_varies_per_learner():
    assert {f: sent_spec(learner_seed(n))["fault"] for f, n in FAULT_LEARNERS.items()} == {
        f: f for f in FAULT_LEARNERS}


@pytest.mark.parametrize("fault", sorted(FAULT_LEARNERS))
def test_ex03_q4_right_for_each_fault(fault, tmp_path, monkeypatch, capsys):
    learner = FAULT_LEARNERS[fault]
    sent = _sent(tmp_path, learner, monkeypatch)
    passes("ex03_q4", capsys, repaired=_repair(sent, tmp_path / "fixed", learner), sent=sent)
    passes("ex03_q4", capsys, repaired=str(_repair(sent, tmp_path / "as_str", learner)), sent=sent)


def test_ex03_q4_right_by_saving_again(tmp_path, monkeypatch, capsys):
    """Loading the weights into a correctly configured model and saving that is a repair too."""
    sent = _sent(tmp_path, "ci", monkeypatch)
    spec = sent_spec(learner_seed("ci"))
    model = get_peft_model(load_base_model(), LoraConfig(r=spec["rank"], lora_alpha=spec["alpha"],
                                                         target_modules=list(spec["targets"])))
    set_peft_model_state_dict(model, load_file(str(next(sent.glob("*.safetensors")))))
    model.save_pretrained(tmp_path / "resaved")
    passes("ex03_q4", capsys, repaired=tmp_path / "resaved", sent=sent)


def _in_place(sent, tmp, learner):
    shutil.rmtree(tmp / "x", ignore_errors=True)
    _repair(sent, tmp / "x", learner)
    shutil.rmtree(sent)
    shutil.move(tmp / "x", sent)
    return sent


def _regenerated(sent, tmp, learner):
    return _repair(broken_folder(tmp / "regen", learner), tmp / "regen_fixed", learner)


def _no_weights(sent, tmp, learner):
    dest = _repair(sent, tmp / "noweights", learner)
    (dest / "adapter_model.safetensors").unlink()
    return dest


def _perturbed(sent, tmp, learner):
    dest = _repair(sent, tmp / "perturbed", learner)
    state = load_file(str(dest / "adapter_model.safetensors"))
    key = sorted(state)[0]
    state[key] = state[key] + 0.01
    save_file(state, str(dest / "adapter_model.safetensors"))
    return dest


def _sent_touched(sent, tmp, learner):
    dest = _repair(sent, tmp / "fixed", learner)
    (sent / "README.md").unlink()
    return dest


# case: (learner, make(sent, tmp, learner) -> repaired, message)
WRONG_Q4 = {
    "unrepaired, silent fault": ("ci", lambda s, t, n: s, r"puts LoRA on \['c_proj'\]"),
    "targets: both kept": ("ci", lambda s, t, n: _repair(s, t / "both", n, target_modules=["c_attn", "c_proj"]),
                           r"puts LoRA on \['c_attn', 'c_proj'\]"),
    "repaired in place": ("ci", _in_place, "`sent` was changed .*repaired copy"),
    "copy made, but sent changed too": ("ci", _sent_touched, "`sent` was changed"),
    "recipe run again": ("ci", _regenerated, "does not hold the weights `sent` was given with"),
    "weights changed": ("ci", _perturbed, "does not hold the weights `sent` was given with"),
    "alpha changed": ("ci", lambda s, t, n: _repair(s, t / "alpha", n, lora_alpha=1), "different logits"),
    "weights file removed": ("ci", _no_weights, "no adapter_model.safetensors in the folder"),
    "a number": ("ci", lambda s, t, n: 8, "should be the folder's path"),
    "rank: unrepaired": ("l0", lambda s, t, n: s, "still does not load: RuntimeError"),
    "rank: another wrong rank": ("l0", lambda s, t, n: _repair(s, t / "r", n, r=16), "still does not load"),
    "weights_name: unrepaired": ("l1", lambda s, t, n: s, r"found adapter_model \(1\)\.safetensors"),
    "peft_type: unrepaired": ("l4", lambda s, t, n: s, "still does not load: KeyError"),
    "peft_type: lower case": ("l4", lambda s, t, n: _repair(s, t / "p", n, peft_type="lora"), "still does not load"),
}


@pytest.mark.parametrize("case", sorted(WRONG_Q4))
def test_ex03_q4_wrong(case, tmp_path, monkeypatch):
    learner, make, message = WRONG_Q4[case]
    sent = _sent(tmp_path, learner, monkeypatch)
    fails("ex03_q4", message, repaired=make(sent, tmp_path, learner), sent=sent)


def test_ex03_q4_in_place_then_sent_rebound_fails(tmp_path, monkeypatch):
    """The only copy repaired in place, then `sent` pointed at a pristine copy: `sent` is not the given folder."""
    sent = _sent(tmp_path, "ci", monkeypatch)
    pristine = tmp_path / "untouched"
    shutil.copytree(sent, pristine)
    repaired = _in_place(sent, tmp_path, "ci")
    fails("ex03_q4", "`sent` names .*untouched.*not the folder the given cell made", repaired=repaired,
          sent=pristine)


def test_ex03_q4_symlinked_weights_named(tmp_path, monkeypatch):
    sent = _sent(tmp_path, FAULT_LEARNERS["weights_name"], monkeypatch)
    dest = tmp_path / "linked"
    shutil.copytree(sent, dest)
    os.symlink("adapter_model (1).safetensors", dest / "adapter_model.safetensors")
    fails("ex03_q4", r"found adapter_model \(1\)\.safetensors.*a symbolic link is not followed", repaired=dest,
          sent=sent)


def test_ex03_q4_copy_of_sent_unchanged_is_not_a_repair(tmp_path, monkeypatch):
    """`repaired` naming `sent` itself, unchanged, fails (here on the fault it still has)."""
    sent = _sent(tmp_path, "ci", monkeypatch)
    fails("ex03_q4", "puts LoRA on", repaired=str(sent), sent=sent)


def test_ex03_q4_another_learners_repair_fails(tmp_path, monkeypatch):
    """ci's repaired folder (its weights, its fix) handed in by bob fails on bob's data."""
    sent = _sent(tmp_path / "ci", "ci", monkeypatch)
    theirs = _repair(sent, tmp_path / "ci_fixed", "ci")
    bob = _sent(tmp_path / "bob", "bob", monkeypatch)
    fails("ex03_q4", "", repaired=theirs, sent=bob)


def test_ex03_q4_without_record(tmp_path, monkeypatch):
    sent = _sent(tmp_path, "ci", monkeypatch)
    restore = _without_record(SENT_ID)
    try:
        fails("ex03_q4", "no record of the folder `sent`", repaired=_repair(sent, tmp_path / "f", "ci"), sent=sent)
    finally:
        restore()
