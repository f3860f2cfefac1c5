"""Exercise 2 (reloading an adapter): its checks accept right answers, and reject wrong ones with feedback that says
what is wrong. Real objects built from the shipped tiny model; the colleague's folder is made and snapshotted as the
notebook's given cells do (its weights are random on every run, so only the folder holds them)."""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from check_assertions import AlwaysEqual, fails, passes
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file

from course_utils import compare_logits, load_base_model, load_tokenizer, shipped_adapter
from course_utils.grading.evidence import record_given
from course_utils.grading.questions.ex02 import _trained, colleague_adapter, colleague_config
from course_utils.learner import learner_seed


class SameAsAnything(str):
    """A str that claims to equal anything."""

    def __eq__(self, other):
        return True

    __hash__ = str.__hash__


def reload(folder, **kwargs):
    return PeftModel.from_pretrained(load_base_model(), str(folder), **kwargs)


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The given cell's folder for learner ci, and the reference logits it hands over."""
    folder = tmp_path_factory.mktemp("ex02") / "ex02_adapter"
    return folder, colleague_adapter(folder, "ci")


@pytest.fixture()
def given(made):
    """The folder, snapshotted as the given cell does (a test that reruns the given cell records its own)."""
    record_given("ex02_given_adapter", folder=made[0])
    return made[0]


def test_the_colleague_adapter_is_per_learner_and_new_on_every_run(made, tmp_path):
    folder, logits = made
    assert colleague_config(learner_seed("ci")) != colleague_config(learner_seed("bob"))
    colleague_adapter(tmp_path / "again", "ci")
    first, again = load_file(folder / "adapter_model.safetensors"), load_file(tmp_path / "again" / "adapter_model.safetensors")
    assert set(first) == set(again) and not any(torch.equal(first[k], again[k]) for k in first)
    assert json.loads((folder / "adapter_config.json").read_text())["r"] == colleague_config(learner_seed("ci")).r
    assert logits.shape[0] > 0


# ---------------------------------------------------------------------------------------- Q1
def _rebuilt_from_seed(folder):
    """The colleague's recipe with a guessed seed: the right shape, other numbers."""
    return _trained(colleague_config(learner_seed("ci")), learner_seed("ci"))


def _fresh_given_state_dict(folder):
    fresh = get_peft_model(load_base_model(), colleague_config(learner_seed("ci")))
    fresh.load_state_dict(_rebuilt_from_seed(folder).state_dict())
    for p in fresh.parameters():
        p.requires_grad = False
    return fresh


def _on_a_changed_base(folder):
    base = load_base_model()
    with torch.no_grad():
        base.transformer.wte.weight.mul_(1.5)
    return PeftModel.from_pretrained(base, str(folder))


def _two_active(folder):
    model = reload(folder)
    model.load_adapter(str(folder), adapter_name="again")
    model.base_model.set_adapter(["default", "again"])
    return model


def _plain_with_lora(folder):
    plain = load_base_model()
    plain.load_adapter(str(folder))
    return plain


def _rerun_given_cell(folder):
    colleague_adapter(folder.parent / "rerun", "ci")
    return reload(folder.parent / "rerun")


Q1_WRONG = {
    "rebuilt from a seed": (_rebuilt_from_seed, "does not hold the weights the given cell saved"),
    "a frozen copy of a rebuilt model": (lambda f: copy.deepcopy(_rebuilt_from_seed(f)).requires_grad_(False),
                                         "does not hold the weights the given cell saved"),
    "a fresh model given another model's state_dict": (_fresh_given_state_dict,
                                                       "does not hold the weights the given cell saved"),
    "an untrained adapter of the right shape": (
        lambda f: get_peft_model(load_base_model(), LoraConfig(**json.loads((f / "adapter_config.json").read_text()))),
        "does not hold the weights"),
    "another adapter": (lambda f: reload(shipped_adapter("spanish_sentiment")), "does not hold the weights"),
    "another run's folder": (_rerun_given_cell, "does not hold the weights.*rerunning the given cell"),
    "on a changed base": (_on_a_changed_base, "gives different logits"),
    "two adapters active": (_two_active, "2 active adapters"),
    "the plain base": (lambda f: load_base_model(), "not a PeftModel"),
    "transformers' load_adapter (not a PeftModel)": (_plain_with_lora, "GPT2LMHeadModel, not a PeftModel"),
    "always equal": (lambda f: AlwaysEqual(), "not a PeftModel"),
}


@pytest.mark.parametrize("case", list(Q1_WRONG))
def test_ex02_q1_wrong(case, given):
    make, message = Q1_WRONG[case]
    fails("ex02_q1", message, reloaded=make(given))


def _as_in_lesson_section_7(folder):
    config = LoraConfig(**json.loads((folder / "adapter_config.json").read_text()))
    model = get_peft_model(load_base_model(), config)
    model.load_adapter(str(folder), adapter_name="default")
    return model


def test_ex02_q1_right(given, capsys):
    passes("ex02_q1", capsys, reloaded=reload(given))
    passes("ex02_q1", capsys, reloaded=reload(given, adapter_name="mine"))
    passes("ex02_q1", capsys, reloaded=reload(given, is_trainable=True))  # training was not asked, nor forbidden
    passes("ex02_q1", capsys, reloaded=_as_in_lesson_section_7(given))
    passes("ex02_q1", capsys, reloaded=copy.deepcopy(reload(given)))  # a copy of a real reload came from the folder


# ---------------------------------------------------------------------------------------- Q2
@pytest.fixture()
def multi():
    """A factory: a new given_multi, snapshotted as its given cell does."""
    def build():
        model = get_peft_model(load_base_model(), LoraConfig(r=8, target_modules=["c_attn"]))
        record_given("ex02_given_multi", given_multi=model)
        return model
    return build


def _right(model, folder):
    model.load_adapter(folder, adapter_name="reloaded")
    model.set_adapter("reloaded")
    return model


def test_ex02_q2_right(given, multi, capsys):
    good = _right(multi(), given)
    passes("ex02_q2", capsys, multi=good, given=good)
    positional = multi()
    positional.load_adapter(str(given), "reloaded")
    positional.base_model.set_adapter("reloaded")
    passes("ex02_q2", capsys, multi=positional, given=positional)


def _trap_then_right(model, folder):
    PeftModel.from_pretrained(model, str(folder))  # wraps given_multi, putting LoRA into it
    return _right(model, folder)


def _trap_named(model, folder):
    PeftModel.from_pretrained(model, str(folder), adapter_name="reloaded")
    return model


def _default_overwritten(model, folder):
    model.load_adapter(folder, adapter_name="default")
    return _right(model, folder)


def _base_trained(model, folder):
    with torch.no_grad():
        model.base_model.model.transformer.h[0].mlp.c_fc.weight.add_(0.1)
    return _right(model, folder)


def _other_name(model, folder):
    model.load_adapter(folder, adapter_name="mine")
    return model


def _inactive(model, folder):
    model.load_adapter(folder, adapter_name="reloaded")
    return model


def _random_reloaded(model, folder):
    config = LoraConfig(**json.loads((folder / "adapter_config.json").read_text()))
    model.add_adapter("reloaded", config)
    model.set_adapter("reloaded")
    return model


Q2_WRONG = {
    "PeftModel.from_pretrained(given_multi, ...) first, then the right answer": (
        _trap_then_right, "`given_multi` was changed.*rerun the given cell"),
    "PeftModel.from_pretrained(given_multi, ..., adapter_name='reloaded')": (
        _trap_named, "does not hold the weights.*PeftModel.from_pretrained\\(given_multi, ...\\) adds one.*rerun the given cell"),
    "its default adapter overwritten": (_default_overwritten, "`given_multi` was changed since its given cell"),
    "its base changed": (_base_trained, "`given_multi` was changed since its given cell"),
    "another name": (_other_name, r"no adapter named 'reloaded' \(it has \['default', 'mine'\]\)"),
    "not loaded": (lambda m, f: m, "no adapter named 'reloaded'"),
    "not activated": (_inactive, "active adapter is 'default'.*does not activate"),
    "random weights under the name": (_random_reloaded, "does not hold the weights"),
}


@pytest.mark.parametrize("case", list(Q2_WRONG))
def test_ex02_q2_wrong(case, given, multi):
    make, message = Q2_WRONG[case]
    model = make(multi(), given)
    fails("ex02_q2", message, multi=model, given=model)


def test_ex02_q2_new_or_no_model(given, multi):
    given_multi = multi()
    fails("ex02_q2", "is a new model", multi=reload(given, adapter_name="reloaded"), given=given_multi)
    wrapped = PeftModel.from_pretrained(given_multi, str(given), adapter_name="reloaded")  # the trap, kept as multi
    fails("ex02_q2", "`multi` is a PeftModel wrapped around `given_multi`.*changed.*rerun the given cell.*load_adapter",
          multi=wrapped, given=given_multi)
    fails("ex02_q2", "not a PeftModel", multi=load_base_model(), given=given_multi)
    fails("ex02_q2", "not a PeftModel", multi=AlwaysEqual(), given=given_multi)


# ---------------------------------------------------------------------------------------- Q3
SPANISH = shipped_adapter("spanish_sentiment")


def _by_hand():
    model = reload(SPANISH, adapter_name="es")
    for name, p in model.named_parameters():
        p.requires_grad = "lora_" in name
    return model


def test_ex02_q3_right(capsys):
    passes("ex02_q3", capsys, trainable=reload(SPANISH, is_trainable=True))
    passes("ex02_q3", capsys, trainable=_by_hand())


def _everything():
    model = reload(SPANISH, is_trainable=True)
    for p in model.parameters():
        p.requires_grad = True
    return model


def _half():
    model = reload(SPANISH, is_trainable=True)
    next(p for n, p in model.named_parameters() if "lora_B" in n).requires_grad = False
    return model


def _fresh_config():
    config = LoraConfig(**json.loads((SPANISH / "adapter_config.json").read_text()))
    return get_peft_model(load_base_model(), config)


def _merged_base():
    """The spanish adapter on a base with the colleague's adapter merged into it."""
    colleague = _trained(colleague_config(learner_seed("ci")), 0)
    return PeftModel.from_pretrained(colleague.merge_and_unload(), str(SPANISH), is_trainable=True)


def _scaled_base():
    base = load_base_model()
    with torch.no_grad():
        base.transformer.wte.weight.mul_(1.5)
    return PeftModel.from_pretrained(base, str(SPANISH), is_trainable=True)


def _through_transformers():
    base = load_base_model()
    base.load_adapter(str(SPANISH), is_trainable=True)
    return base


Q3_WRONG = {
    "on a base with another adapter merged in": (_merged_base, "not the course's untouched base model"),
    "on a base with a scaled weight": (_scaled_base, "not the course's untouched base model"),
    "transformers' load_adapter (the task asks for a PeftModel)": (_through_transformers,
                                                                   "a GPT2LMHeadModel, not a PeftModel"),
    "frozen (the default)": (lambda: reload(SPANISH), "0 LoRA parameters require grad"),
    "the base trainable too": (_everything, "base-model parameters require grad"),
    "one LoRA tensor frozen": (_half, "1 of the 32 LoRA tensors are still frozen"),
    "the shipped config, fresh weights": (_fresh_config, "does not hold the weights of the shipped"),
    "the other shipped adapter": (lambda: reload(shipped_adapter("english_ner"), is_trainable=True),
                                  "does not hold the weights of the shipped"),
    "the colleague's adapter": (lambda: _trained(colleague_config(learner_seed("ci")), 0),
                                "does not hold the weights of the shipped"),
    "the plain base": (load_base_model, "not a PeftModel"),
    "always equal": (AlwaysEqual, "not a PeftModel"),
}


@pytest.mark.parametrize("case", list(Q3_WRONG))
def test_ex02_q3_wrong(case):
    make, message = Q3_WRONG[case]
    fails("ex02_q3", message, trainable=make())


# ---------------------------------------------------------------------------------------- Q4
def by_compare(saved, candidate):
    tok = load_tokenizer()
    return compare_logits(saved, candidate, tok).ok and not compare_logits(load_base_model(), saved, tok).ok


def by_disable(saved, candidate):
    tok = load_tokenizer()
    same = compare_logits(saved, candidate, tok).ok
    with saved.disable_adapter():
        matters = not compare_logits(load_base_model(), saved, tok).ok  # adapter off: the base's logits
    matters = not compare_logits(load_base_model(), saved, tok).ok
    return np.bool_(same and matters)


def test_ex02_q4_right(capsys):
    passes("ex02_q4", capsys, proves_reload=by_compare)
    passes("ex02_q4", capsys, proves_reload=by_disable)
    passes("ex02_q4", capsys, proves_reload=raw_forward)


def _given_cell(grade_id):
    path = Path(__file__).parents[1] / "exercises/solutions/Exercise_02_reload_adapter.ipynb"
    notebook = json.loads(path.read_text(encoding="utf-8"))
    return next("".join(c["source"]) for c in notebook["cells"]
                if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)


def test_the_given_cells_run_the_course_code_whatever_the_kernel_holds(tmp_path, monkeypatch, capsys):
    """Rebinding colleague_adapter, record_given, get_peft_model... in an earlier cell changes nothing: the locked
    given cells import what they call."""
    monkeypatch.chdir(tmp_path)
    fake = {name: (lambda *a, **k: None) for name in ("colleague_adapter", "record_given", "get_peft_model",
                                                       "load_base_model", "LoraConfig", "list_files")}
    kernel = {"LEARNER": "ci", "Path": Path, **fake}
    exec(_given_cell("ex02_given_adapter"), kernel)  # noqa: S102 - the notebook's own locked cells
    exec(_given_cell("ex02_given_multi"), kernel)  # noqa: S102
    assert kernel["reference_logits"] is not None and (tmp_path / "saved" / "ex02_adapter").is_dir()
    assert isinstance(kernel["given_multi"], PeftModel)
    assert all(kernel[name] is not fake[name] for name in ("colleague_adapter", "record_given", "get_peft_model"))


def _vacuous(saved, candidate):
    return compare_logits(saved, candidate, load_tokenizer()).ok


def _not_base(saved, candidate):
    return not compare_logits(load_base_model(), candidate, load_tokenizer()).ok


def _raises(saved, candidate):
    return candidate.peft_config is not None


def _from_frame(saved, candidate):
    """Reads the probe's case name from the calling frame (the probe keeps none there)."""
    case = sys._getframe(1).f_locals.get("case")
    return case in ("a real reload", "a reload through transformers' load_adapter")


def _unloads_first(saved, candidate):
    saved.unload()  # takes the LoRA layers out of saved's base, in place
    return by_compare(saved, candidate)


def _same_config(saved, candidate):
    """Compares the configs (rank and targets), not what the adapters compute."""
    mine = saved.peft_config[saved.active_adapter]
    return any(c.r == mine.r and set(c.target_modules) == set(mine.target_modules)
               for c in getattr(candidate, "peft_config", {}).values())


Q4_WRONG = {
    "always True": (lambda s, c: True, "wrong on 5 of 8 cases: it returned True on the plain base model"),
    "always False": (lambda s, c: False, "wrong on 3 of 8 cases: it returned False on a real reload"),
    "a LogitCheck": (lambda s, c: compare_logits(s, c, load_tokenizer()), "returned a LogitCheck, not True or False"),
    "same logits only": (_vacuous, "wrong on 1 of 8 cases: .*untrained saved adapter.*prove nothing"),
    "the case name read from the caller's frame": (_from_frame, "wrong on 3 of 8 cases: it returned False on a real"),
    "unloads saved first": (_unloads_first, "False on a real reload"),
    "same config only": (_same_config, "wrong on 4 of 8 cases: .*True on a fresh, untrained adapter.*True on "
                                       "another trained.*True on a reload that lost part"),
    "differs from the base only": (_not_base, "True on another trained adapter of the same shape"),
    "by type": (lambda s, c: isinstance(c, type(s)), "True on a fresh, untrained adapter"),
    "peft attributes": (_raises, "it raised AttributeError: .*no attribute 'peft_config' on the plain base"),
    "always equal": (lambda s, c: AlwaysEqual(), "returned a AlwaysEqual, not True or False"),
    "an always-equal str": (lambda s, c: SameAsAnything("True"), "a type the notebook made"),
    "a number": (lambda s, c: 1, "returned a int, not True or False"),
    "not a function": (True, "should be a function, not a bool"),
}


@pytest.mark.parametrize("case", list(Q4_WRONG))
def test_ex02_q4_wrong(case):
    fails("ex02_q4", Q4_WRONG[case][1], proves_reload=Q4_WRONG[case][0])


class _Reversed:
    def shuffle(self, items):
        items.reverse()


def test_ex02_q4_case_order_is_random(monkeypatch):
    """Answers keyed on the order the cases come in fail: the order is drawn anew (here: reversed) on every run."""
    from course_utils.grading.questions import ex02
    answers = iter([True, True, True, False, False, False, False, False])  # the order CASES lists them in
    monkeypatch.setattr(ex02.secrets, "SystemRandom", _Reversed)
    fails("ex02_q4", "wrong on 6 of 8 cases", proves_reload=lambda s, c: next(answers))


def test_ex02_q4_a_fresh_saved_per_case(capsys):
    """Every case gets its own saved model: a function that answers, then damages it, does not spoil the others."""
    seen = []

    def proves_then_unloads(saved, candidate):
        seen.append(saved)  # kept alive, so that ids are not reused
        answer = by_compare(saved, candidate)
        saved.unload()
        return answer

    passes("ex02_q4", capsys, proves_reload=proves_then_unloads)
    assert len({id(s) for s in seen}) == 8


def raw_forward(saved, candidate):
    """Another right way: plain forward passes on a batch of its own."""
    enc = load_tokenizer()(["hola mundo", "the cat sat"], return_tensors="pt", padding=True)
    with torch.no_grad():
        a, c, b = (m(**enc).logits for m in (saved, candidate, load_base_model()))
    return bool(torch.allclose(a, c, atol=1e-4) and not torch.allclose(a, b, atol=1e-4))


def test_ex02_q4_cases_are_per_learner(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_LEARNER", "bob")
    passes("ex02_q4", capsys, proves_reload=by_compare)
    fails("ex02_q4", "on the plain base model", proves_reload=lambda s, c: True)


@pytest.mark.parametrize("who", ["bob", "s1234"])   # LoRA on c_attn and c_proj; on c_fc only
def test_ex02_q2_trap_on_other_learners_data(who, multi, monkeypatch, tmp_path, capsys):
    """PeftModel.from_pretrained(given_multi, folder) first, then the right answer: the ✗ says given_multi changed.
    The right answer alone passes (LoRA on layers given_multi has none on)."""
    monkeypatch.setenv("COURSE_LEARNER", who)
    folder = tmp_path / "ex02_adapter"
    colleague_adapter(folder, who)
    record_given("ex02_given_adapter", folder=folder)
    good = _right(multi(), folder)
    passes("ex02_q2", capsys, multi=good, given=good)
    passes("ex02_q1", capsys, reloaded=reload(folder))
    for name in ("default", "reloaded"):
        model = multi()
        PeftModel.from_pretrained(model, str(folder), adapter_name=name)
        if name == "default":
            _right(model, folder)
        fails("ex02_q2", "`given_multi`.*PeftModel.from_pretrained\\(given_multi, ...\\).*rerun the given cell",
              multi=model, given=model)


def test_ex02_q1_a_folder_saved_over_after_the_given_cell_fails(tmp_path):
    """The judge reads the folder as the given cell left it: saving another adapter over it, then reloading, fails."""
    folder = tmp_path / "ex02_adapter"
    colleague_adapter(folder, "ci")
    record_given("ex02_given_adapter", folder=folder)
    _rebuilt_from_seed(folder).save_pretrained(folder)
    fails("ex02_q1", "does not hold the weights the given cell saved", reloaded=reload(folder))
