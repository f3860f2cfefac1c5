"""Exercise 5: what its probes record in the learner's kernel (which adapters the LoRA layers run; each forward pass
of the model a probe hands to the learner's function), and how a judge reads a real generation out of those passes
(lesson 5, sections 2 and 3). Split from ex05.py for its length; the judges live there."""
from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch
import transformers
from peft.tuners.lora import LoraLayer

from ...messages import one_line
from ..evidence import Evidence
from .common import require

BASE = "__base__"


@contextmanager
def quiet():
    """No library warnings or load reports (a given cell's output stays the same on every run)."""
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        transformers.logging.set_verbosity(verbosity)


def layers(model) -> dict:
    """In the learner's kernel: which adapters the model's LoRA layers run (PeftModel or plain transformers)."""
    layers = [m for m in model.modules() if isinstance(m, LoraLayer)] if isinstance(model, torch.nn.Module) else []
    return {"layers": len(layers), "active": sorted({tuple(m.active_adapters) for m in layers}),
            "disabled": any(m.disable_adapters for m in layers)}


def active_adapter(ev: Evidence, name: str) -> str:
    """The one adapter the LoRA layers of answer ``name`` run, as the probe read it."""
    state = ev.probe("active_state") or {}
    require(isinstance(state, dict) and state.get("layers"), f"`{name}` has no LoRA layers.")
    require(not state.get("disabled"), f"the adapters of `{name}` are disabled: enable them (lesson 5, section 2).")
    sets = state.get("active") or []
    require(len(sets) == 1 and len(sets[0]) == 1, f"`{name}` runs {', '.join(map(str, sets)) or 'no adapter'}: "
                                                  "activate exactly one adapter.")
    return sets[0][0]


def call(fn, *args):
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - the learner's function failed: that is the evidence
        return {"raised": one_line(exc)}


def record_passes(model, calls: list) -> None:
    """Hooks on a probe's model: each forward pass's input ids, with the adapter names peft passed to its first LoRA
    layer and the adapters active there (a judge sees which rows ran, with which adapter, feeding what)."""
    layer = next(m for m in model.modules() if isinstance(m, LoraLayer))

    def before(_module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        calls.append({"ids": ids.tolist() if isinstance(ids, torch.Tensor) else None})

    def after(_module, _args, kwargs, _result):
        if not calls or "active" in calls[-1]:
            calls.append({"ids": None})
        names = kwargs.get("adapter_names")
        calls[-1].update(names=None if names is None else [str(n) for n in names], active=list(layer.active_adapters),
                         off=bool(layer.disable_adapters))
    model.get_base_model().register_forward_pre_hook(before, with_kwargs=True)
    layer.register_forward_hook(after, with_kwargs=True)


def row_adapters(call: dict, rows: int) -> list:
    if call.get("names") is not None:
        return list(call["names"])
    active = call.get("active") or []
    return [BASE if call.get("off") else active[0] if len(active) == 1 else None] * rows


def _pairing(call, data: tuple, batch, pad: int) -> list[int] | None:
    """Which row of the batch each row of a forward pass is: its prompt's ids (left-padded), with its own adapter."""
    ids = call.get("ids") if isinstance(call, dict) else None
    if not isinstance(ids, list) or len(ids) != len(batch):
        return None
    free, order = set(range(len(batch))), []
    for row, name in zip(ids, row_adapters(call, len(ids))):
        i = next((i for i in sorted(free) if batch[i][0] == name and _padded(row, data[i][0], pad)), None)
        if i is None:
            return None
        free.discard(i)
        order.append(i)
    return order


def _padded(row, prompt: list[int], pad: int) -> bool:
    cut = len(row) - len(prompt) if isinstance(row, list) else -1
    return cut >= 0 and row[cut:] == prompt and set(row[:cut]) <= {pad}


def _steps_ok(calls: list, start: int, order: list[int], data: tuple) -> bool:
    """The passes after the prefill at ``start`` feed, row by row, the tokens generation wrote: one pass per token."""
    names = row_adapters(calls[start], len(order))
    for k in range(1, max(len(new) for _, new in data)):
        call = calls[start + k] if start + k < len(calls) and isinstance(calls[start + k], dict) else {}
        ids = call.get("ids")
        if not isinstance(ids, list) or len(ids) != len(order) or row_adapters(call, len(order)) != names:
            return False
        if any(k < len(data[i][1]) and not (isinstance(ids[j], list) and ids[j] and ids[j][-1] == data[i][1][k - 1])
               for j, i in enumerate(order)):
            return False
    return True


def generated(calls, batch: tuple, data: tuple, pad: int, why: str, pairing: str = "", then=None) -> None:
    """The recorded passes hold a real generation of ``batch``: a prefill of every prompt with its own adapter, then
    one pass per new token with the same rows and adapters. ``data``: per row, its prompt's ids and the new ids the
    checker's own generation writes up to the row's text end; ``pad``: the padding id."""
    require(isinstance(calls, list) and calls, why)
    starts = [(s, order) for s, call in enumerate(calls) if (order := _pairing(call, data, batch, pad)) is not None]
    require(starts, pairing or why)
    if then is not None:   # what the judge checks between the pairing and the steps (e.g. the texts)
        then()
    require(any(_steps_ok(calls, s, order, data) for s, order in starts), why)
