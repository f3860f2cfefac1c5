"""Exercise 2 (lesson 2, reloading an adapter and proving it loaded): the data it gives and the judges of its
questions.

The colleague's adapter (``colleague_adapter``) has a per-learner rank and targets and weights drawn from
``secrets``: the folder is the only place they exist (the given cell keeps no model, only reference logits), and
the given cell snapshots the folder (``record_given``), so a judge knows what the folder held before any answer ran.
"""
from __future__ import annotations

import random
import secrets
import tempfile
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict

from ...adapter_format import WEIGHTS_FILE, is_lora_name
from ...learner import learner_seed
from ...messages import one_line
from ...models import load_base_model
from ...roundtrip import logits_of, sample_batch
from ...shipped import shipped_adapter
from ..evidence import Evidence, EvidenceError, Opaque, type_name
from ..rebuild import PEFT_CLASSES
from .common import (
    Question,
    Wrong,
    active,
    base_params,
    holds,
    holds_file,
    lora_params,
    notebook_type,
    peft_model,
    reload,
    require,
    same_logits,
    tokenizer,
    weights_of,
)

RANKS = (4, 6, 8, 12)
TARGET_SETS = (("c_attn",), ("c_attn", "c_fc"), ("c_fc", "c_proj"), ("c_attn", "c_proj"), ("c_fc",))
GIVEN_FOLDER = "ex02_given_adapter"   # the grade_id of the given cell that saves the colleague's adapter
GIVEN_MULTI = "ex02_given_multi"      # the grade_id of the given cell that builds given_multi
RERUN = "rerun the given cell that builds it, then load the adapter into it with load_adapter (lesson 2, section 6)"


@lru_cache(maxsize=16)
def colleague_config(seed: int, salt: str = "given") -> LoraConfig:
    """The colleague's LoRA config for a learner's seed: its rank and targets differ between learners."""
    rng = random.Random(f"ex02:{salt}:{seed}")
    r = rng.choice(RANKS)
    return LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(rng.choice(TARGET_SETS)), init_lora_weights=False)


def _trained(config: LoraConfig, seed: int) -> PeftModel:
    """A PeftModel with ``config`` and non-zero weights from ``seed`` (the caller's torch RNG is left alone)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return get_peft_model(load_base_model(), replace(config, init_lora_weights=False))


def colleague_adapter(target, learner: str) -> torch.Tensor:
    """Exercise 2's given cell: save a colleague's trained adapter into ``target`` and return its logits on
    ``sample_batch`` (the only trace of it outside the folder). Its weights are random on every run."""
    model = _trained(colleague_config(learner_seed(learner)), secrets.randbits(62))
    model.save_pretrained(str(target))
    return logits_of(model, sample_batch(tokenizer()))


def _given_folder(ev: Evidence) -> Path:
    """The colleague's folder as the given cell left it."""
    snap = ev.earlier(GIVEN_FOLDER)
    path = snap.value("folder") if snap is not None else None
    require(isinstance(path, Path) and (path / WEIGHTS_FILE).is_file(),
            "the given cell that saves the colleague's adapter has not run: run the notebook from the top.")
    return path


def _q1(ev: Evidence) -> str:
    """Lesson 2: the colleague's adapter reloaded from the given folder (its weights exist nowhere else)."""
    model = peft_model(ev, "reloaded")
    adapter = active(model, "reloaded")
    path = _given_folder(ev)
    require(holds(model, adapter, weights_of(path)),
            "the active adapter of `reloaded` does not hold the weights the given cell saved in `folder`: load "
            "them from that folder (a model rebuilt from a seed or another adapter holds other numbers; rerunning "
            "the given cell saves new ones).")
    return "loaded from the given folder; " + same_logits(reload(path), model, "`reloaded`")


def _multi(ev: Evidence):
    """``multi``, rebuilt; a model that cannot be rebuilt had LoRA put into its LoRA layers."""
    try:
        value = ev.value("multi")
        if isinstance(value, Opaque) and value.type_name in PEFT_CLASSES:
            raise Wrong(f"`multi` is a PeftModel wrapped around `given_multi`, which PeftModel.from_pretrained("
                        f"given_multi, ...) changed (LoRA inside its LoRA layers): {RERUN}.")
        return peft_model(ev, "multi")
    except EvidenceError:
        raise Wrong(f"`given_multi` was changed in a way no load_adapter does (LoRA layers inside its LoRA layers: "
                    f"PeftModel.from_pretrained(given_multi, ...) wraps the model it is given): {RERUN}.") from None


def _base_weights(model) -> dict:
    """The base model's weights by their names without LoRA's ``base_layer`` (loading LoRA onto a layer adds it)."""
    return {name.replace(".base_layer", ""): p for name, p in base_params(model)}


def _unchanged(multi, ev: Evidence) -> None:
    """``multi`` still holds what the given cell built: its 'default' adapter and its base weights."""
    before = ev.earlier(GIVEN_MULTI)
    require(before is not None and before.has("given_multi"), "the given cell that builds `given_multi` has not "
                                                              "run: run the notebook from the top.")
    given = peft_model(before, "given_multi")
    default = get_peft_model_state_dict(given, adapter_name="default")
    base_then, base_now = _base_weights(given), _base_weights(multi)
    same_base = set(base_then) <= set(base_now) and all(torch.equal(base_then[k], base_now[k]) for k in base_then)
    require(holds(multi, "default", default) and same_base,
            f"`given_multi` was changed since its given cell (its 'default' adapter or its base weights are not what "
            f"the cell built: PeftModel.from_pretrained(given_multi, ...) changes the model it wraps): {RERUN}.")


def _q2(ev: Evidence) -> str:
    """Lesson 2: the adapter loaded into the given PeftModel under the name 'reloaded', and active."""
    multi = _multi(ev)
    require(ev.same("multi", "given"), "`multi` is a new model: load the adapter into `given_multi`, the model the "
                                       "given cell built.")
    path = _given_folder(ev)
    _unchanged(multi, ev)
    names = sorted(multi.peft_config)
    require("reloaded" in names, f"`multi` has no adapter named 'reloaded' (it has {names}).")
    require(holds(multi, "reloaded", weights_of(path)),
            f"the adapter 'reloaded' does not hold the weights in {path.name}/{WEIGHTS_FILE}: load it from there. If "
            "a try left a wrong 'reloaded' in `given_multi` (PeftModel.from_pretrained(given_multi, ...) adds one to "
            f"the model it wraps, without loading it), {RERUN}.")
    now = active(multi, "multi")
    require(now == "reloaded", f"the active adapter is {now!r}: loading an adapter into a PeftModel does not "
                               "activate it.")
    return "'reloaded' is active and gives " + same_logits(reload(path), multi, "the 'reloaded' adapter")


def _q3(ev: Evidence) -> str:
    """Lesson 2: the shipped spanish_sentiment adapter reloaded for training: LoRA trainable, base frozen."""
    model = peft_model(ev, "trainable")
    require(holds_file(model, active(model, "trainable"), shipped_adapter("spanish_sentiment") / WEIGHTS_FILE),
            "the active adapter of `trainable` does not hold the weights of the shipped spanish_sentiment adapter.")
    lora = lora_params(model)
    n_lora = sum(p.requires_grad for _, p in lora)
    require(n_lora > 0, "0 LoRA parameters require grad: an adapter is reloaded frozen unless you ask otherwise.")
    require(n_lora == len(lora), f"{len(lora) - n_lora} of the {len(lora)} LoRA tensors are still frozen.")
    n_base = sum(p.requires_grad for _, p in base_params(model))
    require(n_base == 0, f"{n_base} base-model parameters require grad: training would change the base too.")
    require(_course_base(model), "the base model under `trainable` is not the course's untouched base model (its "
                                 "weights differ: merged or changed): load the adapter onto a fresh base model.")
    return f"{n_lora} LoRA tensors trainable, base frozen, the shipped weights loaded; " + same_logits(
        reload(shipped_adapter("spanish_sentiment")), model, "`trainable`")


def _course_base(model) -> bool:
    """Whether the base weights of ``model`` are those of a fresh ``load_base_model()``."""
    mine = {k.removeprefix("base_model.model."): p for k, p in _base_weights(model).items()}
    course = dict(load_base_model().named_parameters())
    return set(mine) == set(course) and all(torch.equal(mine[k].detach().float(), course[k].float()) for k in course)


def _saved_pair(seed: int, make_candidate, untrained: bool = False):
    """A fresh trained (or untrained) adapter of the learner's Q4 config, and ``make_candidate(path)`` where
    ``path`` holds it saved."""
    config = colleague_config(seed, "q4")
    saved = (get_peft_model(load_base_model(), replace(config, init_lora_weights=True)) if untrained
             else _trained(config, secrets.randbits(31)))
    with tempfile.TemporaryDirectory() as tmp:
        saved.save_pretrained(Path(tmp))
        return saved, make_candidate(Path(tmp))


def _through_transformers(path: Path):
    plain = load_base_model()
    plain.load_adapter(str(path))
    return plain


def _part_lost(path: Path):
    """A real reload whose LoRA B matrices are zero in the first half of the blocks (same config, other logits)."""
    model = reload(path)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if is_lora_name(name, "B") and any(f".h.{i}." in name for i in range(2)):
                p.zero_()
    return model


def _second_adapter(seed: int):
    """A model with two trained adapters, the second active, saved; and the reload of the active one."""
    config = colleague_config(seed, "q4")
    saved = _trained(config, secrets.randbits(31))
    with torch.random.fork_rng():
        torch.manual_seed(secrets.randbits(31))
        saved.add_adapter("second", replace(config, init_lora_weights=False))
    saved.set_adapter("second")
    with tempfile.TemporaryDirectory() as tmp:
        saved.save_pretrained(Path(tmp), selected_adapters=["second"])
        return saved, PeftModel.from_pretrained(load_base_model(), Path(tmp) / "second", adapter_name="second")


# The cases Q4's function is tried on: what it must answer, and how the course builds (saved, candidate) for a seed
# (a fresh pair for every case, with new weights on every run).
CASES = {
    "a real reload": (True, lambda seed: _saved_pair(seed, reload)),
    "a reload through transformers' load_adapter": (True, lambda seed: _saved_pair(seed, _through_transformers)),
    "a reload of the active one of two adapters": (True, _second_adapter),
    "the plain base model": (False, lambda seed: _saved_pair(seed, lambda path: load_base_model())),
    "a fresh, untrained adapter": (False, lambda seed: _saved_pair(seed, lambda path: get_peft_model(
        load_base_model(), replace(colleague_config(seed, "q4"), init_lora_weights=True)))),
    "another trained adapter of the same shape": (False, lambda seed: _saved_pair(
        seed, lambda path: _trained(colleague_config(seed, "q4"), secrets.randbits(31)))),
    "a reload that lost part of the adapter": (False, lambda seed: _saved_pair(seed, _part_lost)),
    "an untrained saved adapter and its reload": (False, lambda seed: _saved_pair(seed, reload, untrained=True)),
}


def _ask(proves, saved, candidate):
    """``proves(saved, candidate)``, or what it raised: this frame holds nothing about the case but the models."""
    try:
        return proves(saved, candidate)
    except Exception as exc:  # noqa: BLE001 - the learner's function failed: that is the evidence
        return {"raised": one_line(exc)}


def _probe_q4(answers: dict) -> dict:
    """In the learner's kernel: ``proves_reload`` run on each case of CASES, in a new random order every run."""
    proves = answers.get("proves_reload")
    if not callable(proves):
        return {}
    order = list(CASES)
    secrets.SystemRandom().shuffle(order)
    seed = learner_seed()
    return dict(zip(order, [_ask(proves, *CASES[case][1](seed)) for case in order]))


def _case_problem(case: str, expected: bool, answer) -> str | None:
    """What is wrong with ``answer`` on ``case`` (None when it is right)."""
    if isinstance(answer, dict) and "raised" in answer:
        return f"it raised {answer['raised']} on {case}"
    if isinstance(answer, Opaque) and answer.foreign:
        return f"it returned a {answer.type_name} (a type the notebook made) on {case}"
    if not isinstance(answer, bool):
        return f"it returned a {type_name(answer)}, not True or False, on {case}"
    if answer != expected:
        why = " (matching logits prove nothing when the saved adapter is untrained)" if "untrained saved" in case else ""
        return f"it returned {answer} on {case}{why}"
    return None


def _q4(ev: Evidence) -> str:
    """Lesson 2: the learner's own logit proof, run on every case: True for real reloads, False for loads that
    prove nothing."""
    fn = ev.value("proves_reload")
    notebook_type(fn, "proves_reload")
    require(isinstance(fn, Opaque) and fn.function, f"`proves_reload` should be a function, not a {type_name(fn)}.")
    problems = [p for case, (expected, _) in CASES.items() if (p := _case_problem(case, expected, ev.probe(case)))]
    if problems:
        raise Wrong(f"wrong on {len(problems)} of {len(CASES)} cases: {'; '.join(problems[:3])} (lesson 2, section 3).")
    return (f"right on all {len(CASES)} cases: True for the reloads, False for the base, untrained, partial or other "
            "adapters")


QUESTIONS = (
    Question("ex02_q1", 2, ("reloaded",), _q1),
    Question("ex02_q2", 2, ("multi",), _q2, ("given",)),
    Question("ex02_q3", 2, ("trainable",), _q3),
    Question("ex02_q4", 3, ("proves_reload",), _q4, (), _probe_q4),
)
