"""A model answer, a folder, a LoRA config or an object's identity as plain data: what the evidence writer saves of them.

Runs in the learner's kernel (``evidence.write``): ``describe_model`` saves a model's class, adapter configs,
active adapters and per-tensor dtype, device and ``requires_grad`` as ``model.json`` and every tensor in
``state.safetensors``; ``relations`` says which answers are one object, one inside another, or share tensors.
The checker rebuilds from this (``rebuild.py``) and trusts none of it beyond data to agree with.
"""
from __future__ import annotations

import enum
import json
import os
import shutil
from pathlib import Path

import torch
from peft.tuners.lora import LoraLayer
from safetensors.torch import save_file

from .rebuild import MODEL_CLASSES

MAX_PARAMETERS = 20_000_000  # a model answer larger than this is not the course's model
MAX_COPY_BYTES = 64 * 2**20  # a folder answer is copied up to this size


def jsonable(value):
    """A config dict with sets, enums and numpy numbers made plain JSON."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [jsonable(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, bool) or value is None or type(value) in (int, float, str):
        return value
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except (TypeError, ValueError, RuntimeError):
            pass
    return str(value)



def describe_model(model, folder: Path) -> None:
    """``model.json`` and ``state.safetensors`` for ``model`` (any ``nn.Module``) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    n = sum(p.numel() for p in model.parameters())
    info = {"class": type(model).__name__, "module": type(model).__module__, "parameters": n}
    if n > MAX_PARAMETERS:
        info["too_large"] = True
        (folder / "model.json").write_text(json.dumps(info), encoding="utf-8")
        return
    inner = _inner_model(model)
    info["base_class"] = type(inner).__name__ if inner is not None else None
    info["base_config"] = jsonable(inner.config.to_dict()) if inner is not None and hasattr(inner, "config") else {}
    configs = getattr(model, "peft_config", None)
    info["adapters"] = ({k: jsonable(v.to_dict()) for k, v in configs.items()} if isinstance(configs, dict) else {})
    active = getattr(getattr(model, "base_model", None), "active_adapters", None)
    info["active_adapters"] = list(active) if isinstance(active, (list, tuple)) else []
    info["lora_modules"] = [name for name, module in model.named_modules() if _is_lora_layer(module)]
    info["lora_state"] = {name: lora_layer_state(module) for name, module in model.named_modules()
                          if _is_lora_layer(module)}
    params = {}
    for name, p in model.named_parameters():
        params[name] = {"dtype": str(p.dtype).removeprefix("torch."), "device": p.device.type,
                        "requires_grad": bool(p.requires_grad), "shape": list(p.shape)}
    info["params"] = params
    info["buffers"] = {name: {"dtype": str(b.dtype).removeprefix("torch."), "device": b.device.type}
                       for name, b in model.named_buffers()}
    state = {}
    for key, t in model.state_dict().items():
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            state[key] = t.detach().to("cpu").contiguous().clone()
    save_file(state, str(folder / "state.safetensors"))
    (folder / "model.json").write_text(json.dumps(info), encoding="utf-8")


def _inner_model(model):
    """The transformers model inside ``model`` (itself when it is one), or None."""
    seen = model
    for _ in range(3):
        if hasattr(seen, "config") and type(seen).__name__ in MODEL_CLASSES:
            return seen
        seen = getattr(seen, "model", None) if type(seen).__name__ in ("LoraModel",) else getattr(seen, "base_model", None)
        if seen is None:
            return None
    return None


def lora_layer_state(module) -> dict:
    """What a LoRA layer computes besides its tensors: switched off, which adapters are merged into the base
    weights, and each adapter's scaling (``set_scale`` changes it; the config does not say)."""
    scaling = getattr(module, "scaling", {})
    return {"disabled": bool(getattr(module, "disable_adapters", False)),
            "merged": [str(a) for a in getattr(module, "merged_adapters", [])],
            "scaling": {str(k): float(v) for k, v in scaling.items() if isinstance(v, (int, float))}
            if isinstance(scaling, dict) else {}}


def _is_lora_layer(module) -> bool:
    return isinstance(module, LoraLayer)


def relations(answers: dict) -> list[list[str]]:
    """``[kind, a, b]`` for the answers that are one object, or one model inside another."""
    models = {k: v for k, v in answers.items() if isinstance(v, torch.nn.Module)}
    out = []
    for a, x in models.items():
        for b, y in models.items():
            if a == b:
                continue
            if x is y:
                out.append(["same", a, b])
                continue
            inner = getattr(getattr(y, "base_model", None), "model", None)
            if x is inner or x is getattr(y, "base_model", None):
                out.append(["inside", a, b])
    return out


def copy_answer(source: Path, target: Path, leave_out=()) -> bool:
    """Copy a file or folder (no links followed, at most MAX_COPY_BYTES); False when it was too large.
    ``leave_out``: folders never copied (the evidence being written, when the answer is a folder around it)."""
    skip = {os.path.realpath(p) for p in leave_out if p is not None}
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_file():
        if source.stat().st_size > MAX_COPY_BYTES:
            return False
        shutil.copyfile(source, target)
        return True
    total = 0
    for root, dirs, files in os.walk(source, followlinks=False):
        rel = Path(root).relative_to(source)
        (target / rel).mkdir(parents=True, exist_ok=True)
        dirs[:] = [d for d in dirs if not (Path(root) / d).is_symlink()
                   and os.path.realpath(Path(root) / d) not in skip]
        for f in files:
            src = Path(root) / f
            if src.is_symlink() or not src.is_file():
                continue
            total += src.stat().st_size
            if total > MAX_COPY_BYTES:
                return False
            shutil.copyfile(src, target / rel / f)
    return True
