"""Exercise 2 (lesson 2, reloading an adapter and proving it loaded): the judges of its questions.

The adapter the exercise gives is ``given.colleague(0, targets=("c_attn", "c_fc"))``; the checker builds it again.
"""
from __future__ import annotations

from peft import LoraConfig, PeftModel, get_peft_model

from ...adapter_format import WEIGHTS_FILE
from ...messages import one_line
from ...models import load_base_model
from ...shipped import shipped_adapter
from ..evidence import Evidence, Opaque
from .common import (
    Question,
    active,
    base_params,
    folder,
    holds,
    holds_file,
    loaded_from,
    lora_params,
    peft_model,
    require,
    same_logits,
    weights_of,
)
from .given import reference, saved_and_reloaded

TARGETS = ("c_attn", "c_fc")


def _q1(ev: Evidence) -> str:
    """Lesson 2: a reload with PeftModel.from_pretrained that reproduces the saved model's logits."""
    return loaded_from(ev, "reloaded", folder(ev, "folder"), reference(0, "default", TARGETS), "reference")


def _q2(ev: Evidence) -> str:
    """Lesson 2: the adapter loaded into the given PeftModel under the name 'reloaded', and active."""
    path = folder(ev, "folder")
    multi = peft_model(ev, "multi")
    require(ev.same("multi", "given"), "`multi` is a new model: load the adapter into `given_multi`, the model the "
                                       "given cell built.")
    names = sorted(multi.peft_config)
    require("reloaded" in names, f"`multi` has no adapter named 'reloaded' (it has {names}).")
    require(holds(multi, "reloaded", weights_of(path)),
            f"the adapter 'reloaded' does not hold the weights in {path.name}/{WEIGHTS_FILE}: load it from there.")
    now = active(multi, "multi")
    require(now == "reloaded", f"the active adapter is {now!r}: loading an adapter into a PeftModel does not "
                               "activate it.")
    return "'reloaded' is active and gives " + same_logits(reference(0, "default", TARGETS), multi,
                                                           "the 'reloaded' adapter")


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
    return f"{n_lora} LoRA tensors trainable, base frozen, the shipped weights loaded"


# The cases Q4's function is tried on, and what it must answer for each.
CASES = {"a real reload": True, "the plain base model": False, "a fresh, untrained adapter": False,
         "another trained adapter": False, "an untrained saved adapter": False}


def _probe_q4(answers: dict) -> dict:
    """In the learner's kernel: ``proves_reload`` run on the cases of CASES, built here from the course's recipes."""
    proves = answers.get("proves_reload")
    if not callable(proves):
        return {}
    saved, (real,) = saved_and_reloaded(1, targets=TARGETS)

    def untrained():
        return get_peft_model(load_base_model(), LoraConfig(r=8, target_modules=["c_attn"]))

    pairs = {"a real reload": (saved, real), "the plain base model": (saved, load_base_model()),
             "a fresh, untrained adapter": (saved, untrained()),
             "another trained adapter": (saved, PeftModel.from_pretrained(load_base_model(),
                                                                          shipped_adapter("spanish_sentiment"))),
             "an untrained saved adapter": (untrained(), untrained())}
    out = {}
    for case, (a, b) in pairs.items():
        try:
            out[case] = proves(a, b)
        except Exception as exc:  # noqa: BLE001 - the learner's function failed: that is the evidence
            out[case] = {"raised": one_line(exc)}
    return out


def _q4(ev: Evidence) -> str:
    """Lesson 2: the learner's own logit proof: True for a real reload, False for every load that proves nothing."""
    folder(ev, "folder")
    fn = ev.value("proves_reload")
    require(isinstance(fn, Opaque) and fn.function, f"`proves_reload` should be a function, not a "
                                                    f"{getattr(fn, 'type_name', type(fn).__name__)}.")
    for case, expected in CASES.items():
        answer = ev.probe(case)
        if isinstance(answer, dict) and "raised" in answer:
            require(False, f"it raised {answer['raised']} ({case}).")
        require(isinstance(answer, bool), f"`proves_reload` should return True or False, not a "
                                          f"{getattr(answer, 'type_name', type(answer).__name__)} ({case}).")
        if expected:
            require(answer, "it returns False for a real reload of the saved adapter.")
        elif case == "an untrained saved adapter":
            require(not answer, "it returns True when the saved adapter is untrained: matching logits then prove "
                                "nothing (the base model gives them too).")
        else:
            require(not answer, f"it returns True for {case}.")
    return "True for the real reload; False for the base, an untrained or another adapter, and a no-op adapter"


QUESTIONS = (
    Question("ex02_q1", 2, ("reloaded",), _q1, ("folder", "reference")),
    Question("ex02_q2", 2, ("multi",), _q2, ("folder", "given", "reference")),
    Question("ex02_q3", 2, ("trainable",), _q3),
    Question("ex02_q4", 3, ("proves_reload",), _q4, ("folder", "reference"), _probe_q4),
)
