"""Exercise 4 (lesson 4, device and dtype moves): the judges of its questions.

Q3 asks for a function, ``place(model)``: its probe runs it in the learner's kernel on machines simulated by
patching torch's device checks (a GPU, Apple's MPS, a CPU only) and records what it returned and where the
model ended up; the judge compares that with ``device_name()`` under the same simulation, in the checker.
"""
from __future__ import annotations

from contextlib import ExitStack
from unittest import mock

import torch
from peft import get_peft_model_state_dict

from ...messages import one_line
from ...placement import device_name
from ..evidence import Evidence, Opaque, type_name
from .common import (
    Question,
    active,
    base_params,
    dtype_counts,
    folder,
    lora_params,
    notebook_type,
    peft_model,
    require,
    same_logits,
    whole_number,
)
from .given import budget_for, reference, saved_and_reloaded

TARGETS = ("c_attn", "c_fc")
# bfloat16 keeps about 3 significant digits: logits of a bfloat16 base stay this close to float32 ones.
BF16_ATOL = 0.25
# A float32 model that had one layer round-tripped through bfloat16 stays this close.
REPAIRED_ATOL = 1e-2
MACHINES = ("cuda", "mps", "cpu")   # the machines Q3's function is tried on


def _ref():
    return reference(0, "default", TARGETS)


def _lora_weights_match(model, path, atol: float) -> None:
    """The model's active adapter holds the given adapter's weights (the checker's own copy of them, not the
    folder's, which the learner's notebook could have rewritten)."""
    saved = get_peft_model_state_dict(_ref())
    mine = get_peft_model_state_dict(model, adapter_name=active(model, "the model"))
    require(set(mine) == set(saved) and all(mine[n].shape == saved[n].shape for n in saved),
            f"its LoRA layers are not the ones saved in {path.name}/.")
    worst = max(float((mine[n].detach().float().cpu() - saved[n].float()).abs().max()) for n in saved)
    require(worst <= atol, f"its LoRA weights differ from the saved ones by up to {worst:.1e}: load them from "
                           f"{path.name}/.")


def _dtype_of(value, name: str) -> torch.dtype:
    notebook_type(value, name)
    if isinstance(value, str):
        found = getattr(torch, value.removeprefix("torch."), None)
        require(isinstance(found, torch.dtype), f"`{name}` = {value!r} is not a torch dtype's name.")
        return found
    require(isinstance(value, torch.dtype), f"`{name}` should be a torch dtype (like torch.float16), not a "
                                            f"{type_name(value)}.")
    return value


def _q1(ev: Evidence) -> str:
    """Lesson 4: a bfloat16 base with the saved adapter on top, the defaults kept (LoRA weights upcast to float32)."""
    path = folder(ev, "folder")
    model = peft_model(ev, "bf16_model")
    base = dtype_counts(base_params(model))
    require(set(base) == {"bfloat16"}, f"the base parameters are {base}: load the base itself in bfloat16.")
    lora = dtype_counts(lora_params(model))
    require(set(lora) == {"float32"}, f"the LoRA weights are {lora}: with peft's defaults an adapter put on a "
                                      "bfloat16 base is not cast down; cast the base before adding the adapter.")
    _lora_weights_match(model, path, atol=0.0)
    answered = _dtype_of(ev.value("lora_dtype"), "lora_dtype")
    require(answered == torch.float32, f"`lora_dtype` is {answered}, but that is not the dtype your model's LoRA "
                                       "weights have: read it from the model.")
    detail = same_logits(_ref(), model, "the bfloat16 model", atol=BF16_ATOL)
    return f"base bfloat16, LoRA float32 as you said; {detail}"


def _q2(ev: Evidence) -> str:
    """Lesson 4: the given model, one layer left in bfloat16, cast back in place so that every parameter is float32."""
    path = folder(ev, "folder")
    model = peft_model(ev, "fixed")
    require(ev.same("fixed", "broken"), "`fixed` is not `broken`: repair the given model itself, without reloading "
                                        "or copying.")
    counts = dtype_counts(model.named_parameters())
    require(set(counts) == {"float32"}, f"its parameters are {counts}: every parameter should be float32.")
    _lora_weights_match(model, path, atol=0.0)
    return "every parameter float32, " + same_logits(_ref(), model, "`fixed`", atol=REPAIRED_ATOL)


def _simulated(machine: str) -> ExitStack:
    """Patch torch so that the best device looks like ``machine`` (``cuda``, ``mps`` or ``cpu``)."""
    stack = ExitStack()
    stack.enter_context(mock.patch.object(torch.cuda, "is_available", return_value=machine == "cuda"))
    stack.enter_context(mock.patch.object(torch.backends.mps, "is_available", return_value=machine == "mps"))
    return stack


def _placed(result) -> dict:
    if not (isinstance(result, tuple) and len(result) == 2):
        return {"shape": "not a (model, device) pair", "type": type(result).__name__}
    model, device = result
    where = sorted({p.device.type for p in model.parameters()}) if isinstance(model, torch.nn.Module) else []
    return {"shape": "pair", "device": device if type(device) is str else f"<{type(device).__name__}>",
            "model_devices": where}


def _probe_q3(answers: dict) -> dict:
    """In the learner's kernel: ``place`` run on a fresh reload, here and on each simulated machine."""
    place = answers.get("place")
    if not callable(place):
        return {}
    _, models = saved_and_reloaded(1 + len(MACHINES), targets=TARGETS)
    fresh = dict(zip(("here", *MACHINES), models))
    out = {}
    for machine, model in fresh.items():
        try:
            if machine == "here":
                out[machine] = _placed(place(model))
            else:
                with _simulated(machine):
                    out[machine] = _placed(place(model))
        except Exception as exc:  # noqa: BLE001 - moving to a simulated device fails: that is the evidence
            out[machine] = {"raised": one_line(exc)}
    return out


def _expected(machine: str) -> str:
    with _simulated(machine):
        return device_name()


def _q3(ev: Evidence) -> str:
    """Lesson 4: a function that puts a model on the best device of whatever machine runs it."""
    folder(ev, "folder")
    place = ev.value("place")
    require(isinstance(place, Opaque) and place.function, f"`place` should be a function, not a "
                                                          f"{type_name(place)}.")
    model = peft_model(ev, "placed")
    best = device_name()
    device = ev.value("device")
    notebook_type(device, "device")
    require(isinstance(device, str), f"`device` should be the device's name (a str), not a {type_name(device)}.")
    require(device == best, f"device {device!r} is not the best one here: ask course_utils, do not hard-code it.")
    where = ev.devices("placed")
    require(set(where) == {best}, f"the tensors sit on {len(where)} device(s), {where}: every parameter and "
                                  f"buffer should be on {best}.")
    for machine in ("here", *MACHINES):
        got = ev.probe(machine)
        want = best if machine == "here" else _expected(machine)
        where_to = "on this machine" if machine == "here" else f"on a machine whose best device is {want}"
        require(isinstance(got, dict), "`place` was not tried: run its cell, then the check again.")
        if "raised" in got:
            # moving to a device this machine does not have fails: fine when it tried the right one
            require(want != best and want in str(got["raised"]).lower(),
                    f"{where_to}, `place` raised {got['raised']}.")
            continue
        require(got.get("shape") == "pair", "`place` should return (model, device).")
        require(got.get("device") == want, f"{where_to}, `place` still picks {got.get('device')!r}: ask course_utils at "
                                           "run time, do not hard-code it.")
        require(got.get("model_devices") == [want], f"{where_to}, `place` says {want} but leaves the model on "
                                                    f"{', '.join(got.get('model_devices') or ['nothing'])}: move it.")
    return f"all {sum(where.values())} tensors on {best}; the right device on a GPU, MPS and CPU machine; " + \
        same_logits(_ref(), model, "`placed`", atol=REPAIRED_ATOL)


def _q4(ev: Evidence) -> str:
    """Lesson 4: a dtype plan for a memory budget: 16-bit base, float32 adapter, the bytes counted, and it fits."""
    path = folder(ev, "folder")
    budget = budget_for(sum(p.numel() for n, p in _ref().named_parameters() if "lora_" in n))
    model = peft_model(ev, "fitted")
    where = ev.devices("fitted")
    require("meta" not in where, "some tensors sit on the meta device: they hold no weights at all.")
    actual = sum(p.numel() * p.element_size() for p in model.parameters())
    stated = whole_number(ev.value("fitted_bytes"), "fitted_bytes")
    require(stated == actual, f"`fitted_bytes` is {stated:,}, but `fitted`'s parameters take {actual:,} bytes "
                              "(count numel x element size over every parameter).")
    require(actual <= budget, f"`fitted` takes {actual:,} bytes, over the budget of {budget:,}.")
    base = dtype_counts(base_params(model))
    require(len(base) == 1, f"the base parameters are {base}: use one dtype for the whole base.")
    require(set(dtype_counts(lora_params(model))) == {"float32"},
            "the LoRA weights should stay float32 (peft's default), they are small.")
    _lora_weights_match(model, path, atol=0.0)
    detail = same_logits(_ref(), model, "`fitted`", atol=BF16_ATOL)
    return f"{actual:,} bytes within the budget of {budget:,}, base {next(iter(base))}, LoRA float32; {detail}"


QUESTIONS = (
    Question("ex04_q1", 2, ("bf16_model", "lora_dtype"), _q1, ("folder", "reference")),
    Question("ex04_q2", 2, ("fixed",), _q2, ("broken", "folder", "reference")),
    Question("ex04_q3", 2, ("place", "placed", "device"), _q3, ("folder", "reference"), _probe_q3),
    Question("ex04_q4", 3, ("fitted", "fitted_bytes"), _q4, ("folder", "reference")),
)
