"""Exercise 4 (lesson 4, device and dtype moves): the adapter it gives, and the judges of its questions.

Each learner gets their own adapter (rank, target modules), 16-bit dtype, broken layer and memory budget, all from
``learner_seed``: the judges make the same data again from ``ev.seed``, so a number read from someone else's
notebook fails. The adapter's weights are drawn with ``secrets`` and the given cell snapshots its folder
(``record_given``): an answer holds them only if it was loaded from that folder, and no in-memory copy is handed out.
Q3 asks for a function, ``place(model)``: its probe runs it in the learner's
kernel on machines simulated by patching torch's device checks (a GPU, Apple's MPS, a CPU only) and ``nn.Module.to``
/ ``.cuda`` (a move to a device this machine lacks goes to ``meta`` and is recorded); the judge examines what it
returned and where the model went on each.
"""
from __future__ import annotations

import copy
import hashlib
import random
import secrets
from contextlib import ExitStack, contextmanager
from functools import lru_cache
from pathlib import Path
from unittest import mock

import torch
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file

from ...adapter_format import WEIGHTS_FILE
from ...learner import learner_seed
from ...messages import one_line
from ...models import load_base_model
from ...placement import device_name
from ..evidence import Evidence, Opaque, type_name
from .common import (
    Question,
    Wrong,
    active,
    base_params,
    dtype_counts,
    lora_params,
    notebook_type,
    peft_model,
    require,
    same_logits,
    whole_number,
)

TARGET_SETS = (("c_attn", "c_fc"), ("c_attn", "c_proj"), ("c_fc", "c_proj"), ("c_attn", "c_fc", "c_proj"))
MODULES = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
# bfloat16 keeps about 3 significant digits: logits of a 16-bit base stay this close to float32 ones.
BF16_ATOL = 0.25
# The repaired model against the checker's own copy repaired the same way (the same bfloat16 rounding).
REPAIRED_ATOL = 1e-4
MACHINES = ("cuda", "mps", "cpu")   # the machines Q3's function is tried on
SIXTEEN = ("bfloat16", "float16")
GIVEN_ID = "ex04_given_adapter"   # the given cell that snapshots `folder` (its nbgrader grade_id)


def spec(seed: int) -> dict:
    """The learner's adapter and task parameters."""
    rng = random.Random(f"ex04-{seed}")
    return {"rank": rng.choice((4, 8, 16)), "targets": rng.choice(TARGET_SETS), "half": rng.choice(SIXTEEN),
            "layer": rng.randrange(4), "module": rng.choice(MODULES), "room": rng.uniform(0.05, 1.25)}


def _make(seed: int, weights_seed: int | None = None) -> PeftModel:
    """The learner's adapter: its shape from ``seed``, its weights from ``weights_seed`` (default: ``seed``)."""
    s = spec(seed)
    config = LoraConfig(r=s["rank"], lora_alpha=2 * s["rank"], target_modules=list(s["targets"]),
                        init_lora_weights=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed if weights_seed is None else weights_seed)
        return get_peft_model(load_base_model(), config)


@lru_cache(maxsize=4)
def _counts(seed: int) -> tuple[int, int]:
    """How many numbers the learner's base and adapter hold."""
    model = _make(seed)
    return sum(p.numel() for _, p in base_params(model)), sum(p.numel() for _, p in lora_params(model))


def given_adapter(target, learner: str) -> Path:
    """Exercise 4: the learner's adapter (non-zero weights from ``secrets``, as if trained) saved into ``target``."""
    _make(learner_seed(learner), secrets.randbits(63)).save_pretrained(str(target))
    return Path(target)


@lru_cache(maxsize=4)
def _reference_of(seed: int, weights_file: str, digest: str) -> PeftModel:
    """The float32 model of the learner's adapter with the weights in ``weights_file`` (``digest``: its hash)."""
    model = _make(seed)
    set_peft_model_state_dict(model, load_file(weights_file))
    return model.eval()


def _given(ev: Evidence) -> tuple[dict, PeftModel]:
    """The weights the given cell saved (its snapshot), and the float32 model they make (the checker's own)."""
    snap = ev.earlier(GIVEN_ID)
    path = snap.value("folder") if snap is not None and snap.has("folder") else None
    weights = path / WEIGHTS_FILE if isinstance(path, Path) else None
    require(weights is not None and weights.is_file(), "the course has no record of the adapter its given cell "
                                                       "saved into `folder`: run the notebook from its first cell.")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    return load_file(str(weights)), _reference_of(ev.seed, str(weights), digest)


def half_dtype(learner: str) -> torch.dtype:
    """Exercise 4 Q1: the 16-bit dtype the learner loads the base model in."""
    return getattr(torch, spec(learner_seed(learner))["half"])


def _cast_layer(model, seed: int, dtype: torch.dtype):
    s = spec(seed)
    layer = model.base_model.model.transformer.h[s["layer"]].get_submodule(s["module"])
    getattr(layer, "base_layer", layer).to(dtype)
    return model


def broken_copy(target, learner: str) -> PeftModel:
    """Exercise 4 Q2: the adapter reloaded from ``target``, one base layer (the learner's own) cast to bfloat16."""
    return _cast_layer(PeftModel.from_pretrained(load_base_model(), str(target)), learner_seed(learner),
                       torch.bfloat16)


def _repaired_ref(reference: PeftModel, seed: int) -> PeftModel:
    """What Q2's repair gives: the learner's adapter with its broken layer rounded through bfloat16."""
    return _cast_layer(_cast_layer(copy.deepcopy(reference), seed, torch.bfloat16), seed, torch.float32)


def _sizes(seed: int) -> tuple[int, int]:
    """Bytes of the learner's model with a float32 base, and with a 16-bit one (the LoRA weights float32)."""
    n_base, n_lora = _counts(seed)
    return 4 * (n_base + n_lora), 2 * n_base + 4 * n_lora


def budget_of(seed: int) -> int:
    full, half = _sizes(seed)
    return half + int(spec(seed)["room"] * (full - half))


def memory_budget(learner: str) -> int:
    """Exercise 4 Q4: the bytes a small device has for the learner's model's parameters."""
    return budget_of(learner_seed(learner))


def _lora_weights_match(model, saved: dict, atol: float) -> None:
    """The model's active adapter holds the weights the given cell saved (the snapshot's, not the folder's now)."""
    mine = get_peft_model_state_dict(model, adapter_name=active(model, "the model"))
    require(set(mine) == set(saved) and all(mine[n].shape == saved[n].shape for n in saved),
            "its LoRA layers are not the ones of the adapter in `folder`: load that one.")
    worst = max(float((mine[n].detach().float().cpu() - saved[n].float()).abs().max()) for n in saved)
    if worst <= atol:
        return
    rounded = next((half for half in SIXTEEN if all(torch.equal(
        mine[n].detach().float().cpu(), saved[n].to(getattr(torch, half)).float()) for n in saved)), None)
    require(rounded is None, f"its LoRA weights were rounded through {rounded} (cast down and back): cast the "
                             "base alone and keep the LoRA weights as loaded (lesson 4, section 7).")
    raise Wrong(f"its LoRA weights differ from the ones saved in `folder` by up to {worst:.1e}: load them from "
                "that folder (not from a recipe or another model).")


def _close(reference, model, what: str) -> str:
    """Logits within bfloat16's precision of the float32 model's (the ✓ line leaves out the difference itself,
    which depends on the learner's random weights)."""
    same_logits(reference, model, what, atol=BF16_ATOL)
    return f"logits within {BF16_ATOL:g} of the float32 model's"


def _dtype_of(value, name: str) -> torch.dtype:
    notebook_type(value, name)
    if isinstance(value, str):
        found = getattr(torch, value.removeprefix("torch."), None)
        require(isinstance(found, torch.dtype), f"`{name}` = {value!r} is not a torch dtype's name.")
        return found
    require(isinstance(value, torch.dtype), f"`{name}` should be a torch dtype (like torch.float16), not a "
                                            f"{type_name(value)}.")
    return value


def _bytes(params) -> int:
    return sum(p.numel() * p.element_size() for _, p in params)


def _q1(ev: Evidence) -> str:
    """Lesson 4 (section 7): a 16-bit base (the learner's dtype) with the saved adapter on top, peft's defaults kept
    (LoRA weights upcast to float32); the dtype and the bytes of the LoRA weights read from the model."""
    half = spec(ev.seed)["half"]
    weights, reference = _given(ev)
    model = peft_model(ev, "half_model")
    base = dtype_counts(base_params(model))
    require(set(base) == {half}, f"the base parameters are {base}: load the base itself in {half}, the dtype the "
                                 "given cell printed for you.")
    lora = dtype_counts(lora_params(model))
    require(set(lora) == {"float32"}, f"the LoRA weights are {lora}: with peft's defaults an adapter put on a "
                                      f"{half} base is not cast down; cast the base before adding the adapter.")
    _lora_weights_match(model, weights, atol=0.0)
    answered = _dtype_of(ev.value("lora_dtype"), "lora_dtype")
    require(answered == torch.float32, f"`lora_dtype` is {answered}, but that is not the dtype your model's LoRA "
                                       "weights have: read it from the model.")
    stated = whole_number(ev.value("lora_bytes"), "lora_bytes")
    actual = _bytes(lora_params(model))
    require(stated == actual, f"`lora_bytes` is {stated:,}, but the LoRA weights of `half_model` take {actual:,} "
                              "bytes: count elements x element size over its LoRA parameters.")
    detail = _close(reference, model, "the 16-bit model")
    return f"base {half}, LoRA float32 ({actual:,} bytes) as you said; {detail}"


def _q2(ev: Evidence) -> str:
    """Lesson 4 (section 8): the given model, one layer left in bfloat16, cast back in place so that every
    parameter is float32."""
    weights, reference = _given(ev)
    model = peft_model(ev, "fixed")
    require(ev.same("fixed", "broken"), "`fixed` is not `broken`: repair the given model itself, without reloading "
                                        "or copying.")
    counts = dtype_counts(model.named_parameters())
    require(set(counts) == {"float32"}, f"its parameters are {counts}: every parameter should be float32.")
    _lora_weights_match(model, weights, atol=0.0)
    return "every parameter float32, " + same_logits(_repaired_ref(reference, ev.seed), model, "`fixed`",
                                                     atol=REPAIRED_ATOL)


# ---------------------------------------------------------------------------------------- Q3
def _simulated(machine: str) -> ExitStack:
    """Patch torch so that the best device looks like ``machine`` (``cuda``, ``mps`` or ``cpu``)."""
    stack = ExitStack()
    stack.enter_context(mock.patch.object(torch.cuda, "is_available", return_value=machine == "cuda"))
    stack.enter_context(mock.patch.object(torch.backends.mps, "is_available", return_value=machine == "mps"))
    return stack


_REAL_DEVICE = torch._C.TensorBase.device  # the getter of ``Tensor.device`` (a C descriptor)


@contextmanager
def _moves_recorded(requested: list, machine: str):
    """``nn.Module.to`` / ``.cuda`` record the device asked for; a device other than the CPU becomes ``meta``
    (a stand-in this machine really has), so that a model can be "moved" to a GPU the machine lacks. A tensor on
    that stand-in reads back as the simulated device (``cuda:0``, ``mps:0``), as it would on that machine."""
    real_to = torch.nn.Module.to
    shown = torch.device(machine, 0) if machine in ("cuda", "mps") else None

    def to(self, *args, **kwargs):
        device, dtype = torch._C._nn._parse_to(*args, **kwargs)[:2]
        if device is None or device.type in ("cpu", "meta"):
            return real_to(self, *args, **kwargs)
        requested.append(device.type)
        moved = real_to(self, device="meta")
        return real_to(moved, dtype=dtype) if dtype is not None else moved

    def cuda(self, device=None):
        requested.append("cuda")
        return real_to(self, device="meta")

    def device_of(tensor):
        real = _REAL_DEVICE.__get__(tensor)
        return shown if real.type == "meta" and shown is not None else real

    with mock.patch.object(torch.nn.Module, "to", to), mock.patch.object(torch.nn.Module, "cuda", cuda), \
            mock.patch.object(torch.Tensor, "device", property(device_of)):
        yield


def _placed(result, given, requested: list) -> dict:
    if not (isinstance(result, tuple) and len(result) == 2):
        return {"shape": "not a (model, device) pair", "type": type(result).__name__}
    model, device = result
    params = list(model.parameters()) if isinstance(model, torch.nn.Module) else []
    return {"shape": "pair", "device": device if type(device) is str else f"<{type(device).__name__}>",
            "model_devices": sorted({_REAL_DEVICE.__get__(p).type for p in params}),
            "dtypes": sorted({str(p.dtype).removeprefix("torch.") for p in params}),
            "same": model is given, "requested": sorted(set(requested))}


def _try(place, model, machine: str) -> dict:
    requested: list = []
    try:
        if machine == "here":
            return _placed(place(model), model, requested)
        with _simulated(machine), _moves_recorded(requested, machine):
            result = place(model)
        return _placed(result, model, requested)
    except Exception as exc:  # noqa: BLE001 - what it raised is the evidence
        return {"raised": one_line(exc)}


def _probe_q3(answers: dict) -> dict:
    """In the learner's kernel: ``place`` run on fresh models, here and on each simulated machine."""
    place = answers.get("place")
    if not callable(place):
        return {}
    seed = learner_seed()
    out = {"best_here": device_name()}
    for machine in ("here", *MACHINES):
        out[machine] = _try(place, _make(seed), machine)
    return out


def _expected(machine: str) -> str:
    with _simulated(machine):
        return device_name()


def _judge_try(got, want: str, machine: str) -> None:
    """One machine's run of ``place``: the right name, the model itself returned, and moved there."""
    where = "on this machine" if machine == "here" else f"on a simulated machine whose best device is {want}"
    require(isinstance(got, dict) and got, "`place` was not tried: run its cell, then the check again.")
    require("raised" not in got, f"{where}, `place` raised {got.get('raised')} (the check stands in for devices "
                                 "it lacks: move the model with its .to(...)).")
    require(got.get("shape") == "pair", "`place` should return (model, device).")
    require(got.get("same") is True, "`place` returns another model than the one it was given: move that model.")
    require(got.get("device") == want, f"{where}, `place` names the device {got.get('device')!r}, not the name "
                                       "course_utils gives it: ask course_utils at run time, do not hard-code it.")
    require(got.get("dtypes") == ["float32"], f"{where}, `place` leaves the model's parameters {got.get('dtypes')} "
                                              "(they were float32): move it, do not cast it (lesson 4, section 1).")
    if machine == "here" or want == "cpu":
        devices = got.get("model_devices")
        require(devices == [want], f"{where}, `place` leaves the model on {devices}: move it to {want}.")
        return
    moved_to = got.get("requested") or []
    require(moved_to == [want] and got.get("model_devices") == ["meta"],
            f"{where}, `place` says {want} but moves the model to {moved_to or 'nowhere'}: move it.")


def _q3(ev: Evidence) -> str:
    """Lesson 4 (section 1): a function that puts a model on the best device of whatever machine runs it, tried
    on this machine and on simulated GPU, MPS and CPU-only machines."""
    place = ev.value("place")
    require(isinstance(place, Opaque) and place.function, f"`place` should be a function, not a "
                                                          f"{type_name(place)}.")
    best = ev.probe("best_here")
    require(best in MACHINES, "`place` was not tried: run its cell, then the check again.")
    for machine in ("here", *MACHINES):
        _judge_try(ev.probe(machine), best if machine == "here" else _expected(machine), machine)
    weights, reference = _given(ev)
    model = peft_model(ev, "placed")
    require(ev.same("placed", "fixed"), "`placed` is not `fixed`: call `place` on the repaired model itself (a "
                                        "copy or a model made again is not the one you repaired).")
    where = ev.devices("placed")
    require(set(where) == {best}, f"the tensors of `placed` sit on {where}: every parameter and buffer should be "
                                  f"on {best}, the best device here.")
    _lora_weights_match(model, weights, atol=0.0)
    return f"`placed` on {best}; the right device and a real move on a GPU, MPS and CPU machine; " + \
        same_logits(_repaired_ref(reference, ev.seed), model, "`placed` (`fixed`, moved)", atol=REPAIRED_ATOL)


# ---------------------------------------------------------------------------------------- Q4
def _q4(ev: Evidence) -> str:
    """Lesson 4 (section 7, measured): the most precise dtype plan that fits the learner's budget: float32 when it
    fits, else a 16-bit base; the LoRA weights float32; the bytes counted from the model."""
    budget = budget_of(ev.seed)
    full, _ = _sizes(ev.seed)
    weights, reference = _given(ev)
    model = peft_model(ev, "fitted")
    where = ev.devices("fitted")
    require("meta" not in where, "some tensors sit on the meta device: they hold no weights at all.")
    actual = _bytes(model.named_parameters())
    stated = whole_number(ev.value("fitted_bytes"), "fitted_bytes")
    require(stated == actual, f"`fitted_bytes` is {stated:,}, but `fitted`'s parameters take {actual:,} bytes "
                              "(count numel x element size over every parameter).")
    require(actual <= budget, f"`fitted` takes {actual:,} bytes, over your budget of {budget:,}.")
    base = dtype_counts(base_params(model))
    require(len(base) == 1, f"the base parameters are {base}: use one dtype for the whole base.")
    require(set(dtype_counts(lora_params(model))) == {"float32"},
            "the LoRA weights should stay float32 (peft's default), they are small.")
    dtype = next(iter(base))
    require(dtype == "float32" or full > budget, f"a float32 base fits your budget too ({full:,} bytes): {dtype} "
                                                 "loses precision for nothing; measure before you cast.")
    require(dtype in ("float32", *SIXTEEN), f"the base is {dtype}: a 16-bit float dtype is as small as this plan "
                                            "needs.")
    _lora_weights_match(model, weights, atol=0.0)
    detail = _close(reference, model, "`fitted`")
    return f"{actual:,} bytes within your budget of {budget:,}, base {dtype}, LoRA float32; {detail}"


QUESTIONS = (
    Question("ex04_q1", 2, ("half_model", "lora_dtype", "lora_bytes"), _q1, ("folder",)),
    Question("ex04_q2", 2, ("fixed",), _q2, ("broken", "folder")),
    Question("ex04_q3", 2, ("place", "placed"), _q3, ("fixed", "folder"), _probe_q3),
    Question("ex04_q4", 3, ("fitted", "fitted_bytes"), _q4, ("folder",)),
)

