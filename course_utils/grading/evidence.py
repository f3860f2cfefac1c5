"""What a graded answer leaves behind, and how the trusted checker reads it back.

A check cell hands its answers to ``write(question, folder, **answers)``, which runs in the learner's kernel and
turns each one into plain data in ``folder``: values as tagged JSON, folders and files copied as they are at that
moment, models as ``model.json`` (class, adapter configs, active adapters, per-tensor dtype, device and
``requires_grad``) plus every tensor in ``state.safetensors``, LoRA configs as their dict, and the outputs of a
function the question asks for (``probes``) as more data. Identity between answers (``multi is given``,
``clean_base is sentiment.base_model.model``, shared tensors) is written as relations.

``Evidence(folder)`` reads that back in the checker's own process: it imports nothing the learner wrote and runs
none of it. Models are rebuilt from the course's own config and classes (only a few config fields may differ,
within bounds) and loaded with the saved tensors; nothing a learner's object said about itself is used except as
data that the rebuilt model must agree with. Patching the kernel can change the evidence, never the verdict's
code. Used by ``checks.check`` (the self-check), ``grader.py`` (export only) and ``check.py`` (the verdict).
"""
from __future__ import annotations

import atexit
import enum
import json
import math
import os
import shutil
import tempfile
import types
from dataclasses import dataclass, fields
from pathlib import Path, PurePath

import numpy as np
import peft
import torch
import transformers
from peft import LoraConfig
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file, save_file

from ..assets import course_model
from ..learner import learner_name
from . import EVIDENCE_ENV

MANIFEST = "manifest.json"
FORMAT = 1
MAX_ITEMS = 10_000          # items of one list, set or dict answer
MAX_DEPTH = 6               # nesting of containers
MAX_COPY_BYTES = 64 * 2**20  # a folder answer is copied up to this size
MAX_PARAMETERS = 20_000_000  # a model answer larger than this is not the course's model
MAX_STRING = 100_000
# Config fields a rebuilt model may take from the evidence (the rest comes from the course's own config).
CONFIG_FIELDS = {"vocab_size": (1, 100_000), "num_labels": (1, 64), "pad_token_id": (0, 100_000)}
MODEL_CLASSES = ("GPT2LMHeadModel", "GPT2ForSequenceClassification")
MAX_RANK = 256      # the largest LoRA rank (or rank_pattern value) the checker builds
MAX_ADAPTERS = 8    # adapters of one model answer
INIT_CHOICES = (True, False, "gaussian", "pissa", "olora")  # LoRA initialisations the checker may run
PEFT_CLASSES = ("PeftModel", "PeftModelForCausalLM", "PeftModelForSequenceClassification")


# ============================================================================ writing (in the learner's kernel)
class _Writer:
    def __init__(self, folder: Path):
        self.folder = folder
        self.seen: dict[int, str] = {}
        self.count = 0

    def _new(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def encode(self, value, depth: int = 0):
        kind = type(value)
        if value is None:
            return {"t": "none"}
        if kind is bool or kind is np.bool_:
            return {"t": "bool", "v": bool(value)}
        if kind is int or isinstance(value, np.integer) and kind.__module__ == "numpy":
            return {"t": "int", "v": int(value), "type": kind.__name__}
        if kind is float or isinstance(value, np.floating) and kind.__module__ == "numpy":
            return {"t": "float", "v": float(value) if math.isfinite(value) else str(value), "type": kind.__name__}
        if kind is str:
            return {"t": "str", "v": value[:MAX_STRING]}
        if isinstance(value, PurePath) and kind.__module__ == "pathlib":
            return {"t": "pathname", "v": str(value)}
        if kind in (list, tuple, set, frozenset):
            if depth >= MAX_DEPTH:
                return {"t": "other", "type": "nested too deeply"}
            items = list(value)[:MAX_ITEMS]
            if kind in (set, frozenset):
                items = sorted(items, key=repr)
            return {"t": kind.__name__, "items": [self.encode(v, depth + 1) for v in items]}
        if kind is dict:
            if depth >= MAX_DEPTH:
                return {"t": "other", "type": "nested too deeply"}
            return {"t": "dict", "items": [[self.encode(k, depth + 1), self.encode(v, depth + 1)]
                                           for k, v in list(value.items())[:MAX_ITEMS]]}
        if kind is torch.dtype:
            return {"t": "dtype", "v": str(value).removeprefix("torch.")}
        if kind is torch.device:
            return {"t": "device", "v": str(value)}
        if kind is torch.Tensor and value.ndim == 0 and not value.is_floating_point() and value.device.type != "meta":
            return {"t": "int", "v": int(value.item()), "type": "Tensor"}
        if _is_lora_config(value):
            return {"t": "lora_config", "v": _jsonable(value.to_dict())}
        if isinstance(value, torch.nn.Module):
            return self._model(value)
        if _is_plain_function(value):
            return {"t": "function", "type": kind.__name__}
        if any(isinstance(value, plain) for plain in (int, float, str, list, tuple, set, dict, PurePath)):
            return {"t": "foreign", "type": kind.__qualname__}
        return {"t": "other", "type": kind.__qualname__}

    def folder_entry(self, value) -> dict:
        """A folder (or file) answer: its path as given, and a copy of what it holds now."""
        path = Path(value)
        entry = {"t": "path", "original": str(value), "exists": path.exists(), "is_dir": path.is_dir()}
        if path.exists():
            where = self._new("files/p")
            target = self.folder / where / (path.name or "root")
            entry["snapshot"] = f"{where}/{path.name or 'root'}"
            entry["copied"] = _copy(path, target, (self.folder, evidence_root(create=False)))
        return entry

    def _model(self, model) -> dict:
        if id(model) in self.seen:
            return {"t": "same", "as": self.seen[id(model)]}
        name = self._new("models/m")
        self.seen[id(model)] = name
        describe_model(model, self.folder / name)
        return {"t": "model", "dir": name}


def _is_path(value) -> bool:
    return type(value) is str or (isinstance(value, PurePath) and type(value).__module__ == "pathlib")


def _is_lora_config(value) -> bool:
    return type(value) is LoraConfig


def _is_plain_function(value) -> bool:
    return type(value) in (types.FunctionType, types.MethodType, types.BuiltinFunctionType)


def _jsonable(value):
    """A config dict with sets, enums and numpy numbers made plain JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    if isinstance(value, bool) or value is None or type(value) in (int, float, str):
        return value
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except (TypeError, ValueError, RuntimeError):
            pass
    return str(value)


def _copy(source: Path, target: Path, leave_out=()) -> bool:
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
    info["base_config"] = _jsonable(inner.config.to_dict()) if inner is not None and hasattr(inner, "config") else {}
    configs = getattr(model, "peft_config", None)
    info["adapters"] = ({k: _jsonable(v.to_dict()) for k, v in configs.items()} if isinstance(configs, dict) else {})
    active = getattr(getattr(model, "base_model", None), "active_adapters", None)
    info["active_adapters"] = list(active) if isinstance(active, (list, tuple)) else []
    info["lora_modules"] = [name for name, module in model.named_modules() if _is_lora_layer(module)]
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


def _is_lora_layer(module) -> bool:
    return isinstance(module, LoraLayer)


def _relations(answers: dict) -> list[list[str]]:
    """``[kind, a, b]`` for the answers that are one object, one model inside another, or share tensors."""
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
            mine = {p.data_ptr() for p in x.parameters() if p.device.type != "meta" and p.numel()}
            if any(p.data_ptr() in mine for p in y.parameters() if p.device.type != "meta" and p.numel()):
                out.append(["shares", a, b])
    return out


def write(question: str, folder, answers: dict, probes: dict | None = None, paths=frozenset()) -> Path:
    """Write the evidence of ``question``'s ``answers`` (name -> object) into ``folder`` (replaced); returns it.

    ``paths``: the names whose str values are paths (their folders are copied).
    ``probes``: what the question's own code measured by running a function answer (plain data and models).
    """
    folder = Path(folder)
    staging = folder.with_name(folder.name + ".writing")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    writer = _Writer(staging)
    manifest = {"format": FORMAT, "question": question, "learner": learner_name(),
                "answers": {k: writer.folder_entry(v) if k in paths and _is_path(v) else writer.encode(v)
                            for k, v in answers.items()},
                "probes": {k: writer.encode(v) for k, v in (probes or {}).items()},
                "relations": _relations(answers)}
    (staging / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return folder


def evidence_root(create: bool = True) -> Path:
    """Where this kernel's evidence goes: the grader's folder (``$COURSE_EVIDENCE``), else a folder of this
    process's own under the temporary directory, kept while the kernel lives, so that a judge can compare with
    what an earlier question or a given cell saved (``Evidence.earlier``)."""
    target = os.environ.get(EVIDENCE_ENV)
    if target:
        return Path(target)
    root = Path(tempfile.gettempdir()) / f"course-selfcheck-{os.getuid()}-{os.getpid()}"
    if not create:
        return root
    if not root.is_dir():
        root.mkdir(mode=0o700, parents=True)
        atexit.register(shutil.rmtree, root, True)
    return root


def record_given(given_id: str, **folders) -> None:
    """Given cells: save a copy of the folders they just made (``name=path``) as the evidence ``given_id``, so that
    a judge knows what they held before any answer ran (the grader copies it away as the cell ends)."""
    write(given_id, evidence_root() / given_id, folders, None, frozenset(folders))



# ============================================================================ reading (in the trusted checker)
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


class Evidence:
    """The evidence of one question, read back as data; models are rebuilt on demand and kept."""

    def __init__(self, folder):
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        if not path.is_file() or path.is_symlink():
            raise EvidenceError(f"no evidence was saved ({MANIFEST} is missing): the check cell did not run to the end")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise EvidenceError(f"the evidence is not readable ({type(exc).__name__})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("answers"), dict):
            raise EvidenceError("the evidence is not in the course's format")
        self.question = data.get("question")
        learner = data.get("learner")
        self.learner = learner if isinstance(learner, str) else None   # whose data the kernel made
        self.seed = 0   # the seed of the learner being graded: set by the checker (``check.verdict``)
        self._answers = data["answers"]
        self._probes = data.get("probes") if isinstance(data.get("probes"), dict) else {}
        rel = data.get("relations")
        self._relations = {tuple(r) for r in rel if isinstance(r, list) and len(r) == 3 and all(
            isinstance(x, str) for x in r)} if isinstance(rel, list) else set()
        self._models: dict[str, object] = {}

    def earlier(self, check_id: str) -> Evidence | None:
        """The evidence of ``check_id`` (an earlier question, or a given cell's snapshot) of the same run, taken
        when that cell ended; None when it was not saved."""
        sibling = self.folder.parent / check_id
        try:
            found = Evidence(sibling) if sibling.is_dir() and not sibling.is_symlink() else None
        except EvidenceError:
            return None
        if found is not None:
            found.seed = self.seed
        return found

    # ------------------------------------------------------------------------ answers
    def names(self) -> list[str]:
        return list(self._answers)

    def has(self, name: str) -> bool:
        return name in self._answers

    def answers(self, names) -> dict:
        return {n: self.value(n) for n in names}

    def value(self, name: str):
        return self._decode(self._answers.get(name, {"t": "none"}))

    def probe(self, name: str, default=None):
        entry = self._probes.get(name)
        return default if entry is None else self._decode(entry)

    def raw(self, name: str) -> dict:
        entry = self._answers.get(name)
        return entry if isinstance(entry, dict) else {}

    def original(self, name: str) -> str | None:
        """The path string the learner passed (for a path answer)."""
        entry = self.raw(name)
        return entry.get("original") if entry.get("t") == "path" else None

    def same(self, a: str, b: str) -> bool:
        return ("same", a, b) in self._relations

    def inside(self, a: str, b: str) -> bool:
        """Whether answer ``a`` is the model inside the PeftModel ``b`` (not a copy)."""
        return ("inside", a, b) in self._relations

    def shares(self, a: str, b: str) -> bool:
        return ("shares", a, b) in self._relations or self.same(a, b)

    def model_info(self, name: str) -> dict:
        entry = self.raw(name)
        folder = entry.get("dir") if entry.get("t") == "model" else entry.get("as")
        return self._info(folder) if isinstance(folder, str) else {}

    def devices(self, name: str) -> dict[str, int]:
        """``{device type: count}`` over the parameters and buffers of a model answer, as the kernel had them."""
        info = self.model_info(name)
        where: dict[str, int] = {}
        for table in ("params", "buffers"):
            for meta in (info.get(table) or {}).values():
                where[str(meta.get("device"))] = where.get(str(meta.get("device")), 0) + 1
        return where

    def lora_modules(self, name: str) -> list[str]:
        return [str(m) for m in self.model_info(name).get("lora_modules") or []]

    # ------------------------------------------------------------------------ decoding
    def _decode(self, entry, depth: int = 0):
        if not isinstance(entry, dict) or depth > MAX_DEPTH + 1:
            raise EvidenceError("the evidence holds an entry the course does not write")
        kind = entry.get("t")
        if kind == "none":
            return None
        if kind in ("bool", "int", "str"):
            value = entry.get("v")
            want = {"bool": bool, "int": int, "str": str}[kind]
            if type(value) is not want:
                raise EvidenceError(f"the evidence holds a malformed {kind}")
            return value
        if kind == "float":
            value = entry.get("v")
            return float(value) if isinstance(value, (int, float, str)) else math.nan
        if kind in ("list", "tuple", "set", "frozenset"):
            items = [self._decode(v, depth + 1) for v in (entry.get("items") or [])[:MAX_ITEMS]]
            if kind in ("set", "frozenset"):
                try:
                    return set(items) if kind == "set" else frozenset(items)
                except TypeError:
                    return items
            return items if kind == "list" else tuple(items)
        if kind == "dict":
            out = {}
            for pair in (entry.get("items") or [])[:MAX_ITEMS]:
                if isinstance(pair, list) and len(pair) == 2:
                    key = self._decode(pair[0], depth + 1)
                    try:
                        out[key] = self._decode(pair[1], depth + 1)
                    except TypeError:
                        continue
            return out
        if kind == "dtype":
            found = getattr(torch, str(entry.get("v")), None)
            return found if isinstance(found, torch.dtype) else Opaque("dtype")
        if kind == "device":
            try:
                return torch.device(str(entry.get("v")))
            except (RuntimeError, TypeError):
                return Opaque("device")
        if kind == "path":
            return self._decode_path(entry)
        if kind == "pathname":
            value = entry.get("v")
            return Path(value) if isinstance(value, str) else Opaque("path")
        if kind == "lora_config":
            return lora_config_from(entry.get("v"))
        if kind == "model":
            return self._rebuilt(entry.get("dir"))
        if kind == "same":
            return self._rebuilt(entry.get("as"))
        if kind == "function":
            return Opaque(str(entry.get("type", "function")), function=True)
        if kind == "foreign":
            return Opaque(str(entry.get("type", "?")), foreign=True)
        if kind == "other":
            return Opaque(str(entry.get("type", "?")))
        raise EvidenceError("the evidence holds an entry the course does not write")

    def _inside(self, relative) -> Path:
        if not isinstance(relative, str):
            raise EvidenceError("the evidence names a file outside its folder")
        path = (self.folder / relative)
        resolved = path.resolve()
        if not resolved.is_relative_to(self.folder.resolve()):
            raise EvidenceError("the evidence names a file outside its folder")
        return path

    def _decode_path(self, entry) -> Path:
        original = entry.get("original")
        if not isinstance(original, str):
            raise EvidenceError("the evidence holds a malformed path")
        if entry.get("exists") and entry.get("snapshot"):
            if entry.get("copied") is False:
                raise EvidenceError(f"{original} is larger than {MAX_COPY_BYTES // 2**20} MiB: not an adapter folder")
            return self._inside(entry["snapshot"])
        return self.folder / "files" / "missing" / (Path(original).name or "missing")

    def _info(self, folder: str) -> dict:
        path = self._inside(folder) / "model.json"
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise EvidenceError("a model's evidence is missing or unreadable") from None
        if not isinstance(info, dict):
            raise EvidenceError("a model's evidence is malformed")
        return info

    def _rebuilt(self, folder):
        if not isinstance(folder, str):
            raise EvidenceError("a model's evidence is malformed")
        if folder not in self._models:
            self._models[folder] = rebuild_model(self._inside(folder), self._info(folder))
        return self._models[folder]


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
    config = _base_config(info.get("base_config") or {}, base_class)
    base = getattr(transformers, base_class)(config).eval()
    model = base
    adapters = info.get("adapters") or {}
    cls = info.get("class")
    if cls in PEFT_CLASSES:
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
    elif cls not in MODEL_CLASSES or info.get("lora_modules"):
        return Opaque(str(cls))  # a plain model with LoRA layers injected is judged from its description
    params = info.get("params") or {}
    for name, p in model.named_parameters():
        meta = params.get(name) or {}
        dtype = getattr(torch, str(meta.get("dtype")), None)
        if isinstance(dtype, torch.dtype) and dtype != p.dtype:
            p.data = p.data.to(dtype)
    state_path = folder / "state.safetensors"
    if state_path.is_symlink() or not state_path.is_file():
        raise EvidenceError("a model's tensors are missing from the evidence")
    try:
        state = load_file(str(state_path))
    except Exception as exc:  # noqa: BLE001 - a malformed file is bad evidence, whatever safetensors raised
        raise EvidenceError(f"a model's tensors are unreadable ({type(exc).__name__})") from None
    own = model.state_dict()
    meta_keys = {k for k, v in params.items() if v.get("device") == "meta"}
    for key, tensor in state.items():
        if key not in own or own[key].shape != tensor.shape:
            raise EvidenceError(f"a model's layers do not match its adapter configs (e.g. {key}): was LoRA added "
                                "on top of LoRA, or a layer changed by hand?")
    missing = [k for k in own if k not in state and k not in meta_keys and not _tied(k, state)]
    if missing:
        raise EvidenceError(f"the model's evidence lacks {len(missing)} tensor(s), e.g. {missing[0]}")
    with torch.no_grad():
        for key, tensor in state.items():
            own[key].copy_(tensor.to(own[key].dtype))
    for name, p in model.named_parameters():
        meta = params.get(name) or {}
        p.requires_grad_(bool(meta.get("requires_grad", False)))
        if meta.get("device") == "meta":
            _to_meta(model, name)
    active = [a for a in info.get("active_adapters") or [] if isinstance(a, str) and a in adapters]
    if cls in PEFT_CLASSES and active:
        model.base_model.set_adapter(active if len(active) > 1 else active[0])
        for name, p in model.named_parameters():  # set_adapter changes requires_grad: the saved flags count
            p.requires_grad_(bool((params.get(name) or {}).get("requires_grad", False)))
    return model.eval()


def _tied(key: str, state: dict) -> bool:
    return key.endswith("lm_head.weight") and any(k.endswith("wte.weight") for k in state)


def _to_meta(model, name: str) -> None:
    owner_name, _, leaf = name.rpartition(".")
    owner = model.get_submodule(owner_name) if owner_name else model
    old = getattr(owner, leaf)
    setattr(owner, leaf, torch.nn.Parameter(torch.empty(old.shape, dtype=old.dtype, device="meta"),
                                            requires_grad=old.requires_grad))
