"""Rebuilding a model answer in the trusted checker from its evidence, within the course model's bounds.

The checker never unpickles or imports what the learner made: a model is rebuilt from the course's own config
and classes (only ``CONFIG_FIELDS`` may differ, within bounds), LoRA configs are checked against the bounds below
before a single tensor is allocated, and the saved tensors are loaded into that model strictly (every key and
shape must fit). Used by ``evidence.Evidence``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

import peft
import torch
import transformers
from peft import LoraConfig
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file

from ..assets import course_model

# Config fields a rebuilt model may take from the evidence (the rest comes from the course's own config).
CONFIG_FIELDS = {"vocab_size": (1, 100_000), "num_labels": (1, 64), "pad_token_id": (0, 100_000)}
MODEL_CLASSES = ("GPT2LMHeadModel", "GPT2ForSequenceClassification")
PEFT_CLASSES = ("PeftModel", "PeftModelForCausalLM", "PeftModelForSequenceClassification")
MAX_RANK = 256      # the largest LoRA rank (or rank_pattern value) the checker builds
MAX_ADAPTERS = 8    # adapters of one model answer
INIT_CHOICES = (True, False, "gaussian", "pissa", "olora")  # LoRA initialisations the checker may run


class EvidenceError(ValueError):
    """The evidence cannot be read (missing, malformed, or not what the course writes)."""


@dataclass(frozen=True)
class Opaque:
    """An answer the checker does not rebuild: its type name, and whether the notebook made the type."""
    type_name: str
    foreign: bool = False
    function: bool = False


def type_name(value) -> str:
    """The name of ``value``'s type as the learner knows it (the recorded one for an ``Opaque`` answer)."""
    return value.type_name if isinstance(value, Opaque) else type(value).__name__


def _number(value, high: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) <= high


def _bounds_problem(kwargs: dict) -> str | None:
    """Why a LoraConfig is beyond anything the course's model takes (before it allocates a single tensor)."""
    r = kwargs.get("r", 8)
    if not (isinstance(r, int) and not isinstance(r, bool) and 0 < r <= MAX_RANK):
        return f"r={r!r} (a whole number from 1 to {MAX_RANK})"
    if not _number(kwargs.get("lora_alpha", 8), 1e6):
        return "lora_alpha out of range"
    for key, high in (("rank_pattern", MAX_RANK), ("alpha_pattern", 1e6)):
        pattern = kwargs.get(key) or {}
        if not isinstance(pattern, dict) or len(pattern) > 64 or not all(
                isinstance(k, str) and len(k) <= 200 and _number(v, high) and v > 0 for k, v in pattern.items()):
            return f"{key} beyond the course's model (at most 64 entries, values up to {high:g})"
    targets = kwargs.get("target_modules")
    if isinstance(targets, str) and len(targets) > 500 or isinstance(targets, list) and (
            len(targets) > 64 or not all(isinstance(t, str) and len(t) <= 200 for t in targets)):
        return "target_modules too long"
    if kwargs.get("layer_replication") is not None:
        return "layer_replication is not used in this course"
    saved = kwargs.get("modules_to_save")
    if saved is not None and not (isinstance(saved, list) and len(saved) <= 8):
        return "modules_to_save too long"
    if kwargs.get("init_lora_weights", True) not in INIT_CHOICES:
        return f"init_lora_weights={kwargs.get('init_lora_weights')!r} is not one this course uses"
    return None


def lora_config_from(data, for_rebuild: bool = False):
    """A ``LoraConfig`` from its saved dict (unknown fields dropped), or an ``Opaque`` when it is not one.

    A config beyond the course model's bounds is refused before anything is built. ``for_rebuild``: the
    weights will come from the evidence, so no initialisation is run (``init_lora_weights=False``)."""
    if not isinstance(data, dict):
        return Opaque("LoraConfig")
    allowed = {f.name for f in fields(LoraConfig) if f.init}
    kwargs = {k: v for k, v in data.items() if k in allowed}
    problem = _bounds_problem(kwargs)
    if problem:
        raise EvidenceError(f"the LoraConfig is beyond the course's model: {problem}")
    if for_rebuild:
        kwargs["init_lora_weights"] = False
    try:
        return LoraConfig(**kwargs)
    except (TypeError, ValueError) as exc:
        raise EvidenceError(f"the LoraConfig could not be rebuilt ({type(exc).__name__})") from None


def _base_config(saved: dict, class_name: str):
    """The course model's own config, with only ``CONFIG_FIELDS`` taken (within bounds) from ``saved``."""
    config = transformers.AutoConfig.from_pretrained(course_model())
    for key, (low, high) in CONFIG_FIELDS.items():
        value = saved.get(key)
        if key == "num_labels" and class_name != "GPT2ForSequenceClassification":
            continue
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            setattr(config, key, value)
    return config


def rebuild_model(folder: Path, info: dict):
    """The model the evidence describes, built by the checker: course config, course classes, saved tensors."""
    if info.get("too_large"):
        raise EvidenceError(f"a model answer has {info.get('parameters')} parameters: not the course's model")
    base_class = info.get("base_class")
    if base_class not in MODEL_CLASSES:
        return Opaque(str(info.get("class", "?")))
    base = getattr(transformers, base_class)(_base_config(info.get("base_config") or {}, base_class)).eval()
    cls = info.get("class")
    if cls in PEFT_CLASSES:
        model = _with_adapters(base, cls, info.get("adapters"))
    elif cls not in MODEL_CLASSES or info.get("lora_modules"):
        return Opaque(str(cls))  # a plain model with LoRA layers injected is judged from its description
    else:
        model = base
    params = info.get("params") or {}
    for name, p in model.named_parameters():
        dtype = getattr(torch, str((params.get(name) or {}).get("dtype")), None)
        if isinstance(dtype, torch.dtype) and dtype != p.dtype:
            p.data = p.data.to(dtype)
    _load_state(model, folder, params)
    _set_flags(model, params)
    active = [a for a in info.get("active_adapters") or [] if isinstance(a, str) and a in (info.get("adapters") or {})]
    if cls in PEFT_CLASSES and active:
        model.base_model.set_adapter(active if len(active) > 1 else active[0])
    if cls in PEFT_CLASSES:
        _set_layer_state(model, info.get("lora_state"))
        _set_flags(model, params, devices=False)  # set_adapter changes requires_grad: the saved flags count
    return model.eval()


def _set_layer_state(model, states) -> None:
    """Each LoRA layer as the learner left it: switched off, adapters merged into the (saved, merged) base
    weights, and scalings changed by ``set_scale``; values beyond what a course model uses are refused."""
    if not isinstance(states, dict):
        return
    layers = {name: module for name, module in model.named_modules() if isinstance(module, LoraLayer)}
    for name, state in states.items():
        layer = layers.get(name)
        if layer is None or not isinstance(state, dict):
            continue
        scaling = state.get("scaling") if isinstance(state.get("scaling"), dict) else {}
        for adapter, value in scaling.items():
            if adapter in layer.scaling:
                if not (_number(value, 1e6) and math.isfinite(value)):
                    raise EvidenceError("a LoRA layer's scaling is beyond the course's model")
                layer.scaling[adapter] = float(value)
        merged = state.get("merged") if isinstance(state.get("merged"), list) else []
        layer.merged_adapters = [a for a in merged if isinstance(a, str) and a in layer.scaling]
        if state.get("disabled") is True:
            layer.enable_adapters(False)


def _with_adapters(base, cls: str, adapters):
    """``base`` wrapped by peft's class ``cls`` with every adapter the evidence names (bounded, not initialised)."""
    if not adapters or not isinstance(adapters, dict):
        raise EvidenceError("a PeftModel's evidence names no adapter")
    if len(adapters) > MAX_ADAPTERS:
        raise EvidenceError(f"a model answer holds {len(adapters)} adapters (at most {MAX_ADAPTERS} are read)")
    configs = {str(name): lora_config_from(cfg, for_rebuild=True) for name, cfg in adapters.items()}
    if any(isinstance(c, Opaque) for c in configs.values()):
        raise EvidenceError("a PeftModel's evidence holds an adapter config that is not a LoraConfig")
    (first, first_config), *rest = configs.items()
    model = getattr(peft, cls)(base, first_config, adapter_name=first)
    for name, cfg in rest:
        model.add_adapter(name, cfg)
    return model


def _load_state(model, folder: Path, params: dict) -> None:
    """Copy the saved tensors into ``model``: every key and shape must fit, and none may be missing."""
    state_path = folder / "state.safetensors"
    if state_path.is_symlink() or not state_path.is_file():
        raise EvidenceError("a model's tensors are missing from the evidence")
    try:
        state = load_file(str(state_path))
    except Exception as exc:  # noqa: BLE001 - a malformed file is bad evidence, whatever safetensors raised
        raise EvidenceError(f"a model's tensors are unreadable ({type(exc).__name__})") from None
    own = model.state_dict()
    for key, tensor in state.items():
        if key not in own or own[key].shape != tensor.shape:
            raise EvidenceError(f"a model's layers do not match its adapter configs (e.g. {key}): was LoRA added "
                                "on top of LoRA, or a layer changed by hand?")
    meta_keys = {k for k, v in params.items() if v.get("device") == "meta"}
    missing = [k for k in own if k not in state and k not in meta_keys and not _tied(k, state)]
    if missing:
        raise EvidenceError(f"the model's evidence lacks {len(missing)} tensor(s), e.g. {missing[0]}")
    with torch.no_grad():
        for key, tensor in state.items():
            own[key].copy_(tensor.to(own[key].dtype))


def _set_flags(model, params: dict, devices: bool = True) -> None:
    """Each parameter's saved ``requires_grad`` (and, with ``devices``, the meta device where it was there)."""
    for name, p in model.named_parameters():
        meta = params.get(name) or {}
        p.requires_grad_(bool(meta.get("requires_grad", False)))
        if devices and meta.get("device") == "meta":
            _to_meta(model, name)


def _tied(key: str, state: dict) -> bool:
    return key.endswith("lm_head.weight") and any(k.endswith("wte.weight") for k in state)


def _to_meta(model, name: str) -> None:
    owner_name, _, leaf = name.rpartition(".")
    owner = model.get_submodule(owner_name) if owner_name else model
    old = getattr(owner, leaf)
    setattr(owner, leaf, torch.nn.Parameter(torch.empty(old.shape, dtype=old.dtype, device="meta"),
                                            requires_grad=old.requires_grad))
