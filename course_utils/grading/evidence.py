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
import json
import math
import os
import shutil
import tempfile
import types
from pathlib import Path, PurePath

import numpy as np
import torch
from peft import LoraConfig

from ..learner import learner_name
from . import EVIDENCE_ENV
from .describe import MAX_COPY_BYTES, copy_answer, describe_model, jsonable, relations
from .rebuild import EvidenceError, Opaque, lora_config_from, rebuild_model, type_name

__all__ = ["Evidence", "EvidenceError", "Opaque", "describe_model", "evidence_root", "record_given", "type_name",
           "write"]

MANIFEST = "manifest.json"
FORMAT = 1
MAX_ITEMS = 10_000          # items of one list, set or dict answer
MAX_DEPTH = 6               # nesting of containers
MAX_STRING = 100_000


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
        """``value`` as a tagged JSON entry: plain values as themselves, containers item by item, models and
        configs as their data, and anything else as its type name only."""
        for encoder in (_plain_entry, self._container_entry, _torch_entry):
            entry = encoder(value, depth)
            if entry is not None:
                return entry
        kind = type(value)
        if isinstance(value, torch.nn.Module):
            return self._model(value)
        if _is_plain_function(value):
            return {"t": "function", "type": kind.__name__}
        if any(isinstance(value, plain) for plain in (int, float, str, list, tuple, set, dict, PurePath)):
            return {"t": "foreign", "type": kind.__qualname__}
        return {"t": "other", "type": kind.__qualname__}

    def _container_entry(self, value, depth: int) -> dict | None:
        kind = type(value)
        if kind not in (list, tuple, set, frozenset, dict):
            return None
        if depth >= MAX_DEPTH:
            return {"t": "other", "type": "nested too deeply"}
        if kind is dict:
            return {"t": "dict", "items": [[self.encode(k, depth + 1), self.encode(v, depth + 1)]
                                           for k, v in list(value.items())[:MAX_ITEMS]]}
        items = list(value)[:MAX_ITEMS]
        if kind in (set, frozenset):
            items = sorted(items, key=repr)
        return {"t": kind.__name__, "items": [self.encode(v, depth + 1) for v in items]}

    def folder_entry(self, value) -> dict:
        """A folder (or file) answer: its path as given, and a copy of what it holds now."""
        path = Path(value)
        entry = {"t": "path", "original": str(value), "exists": path.exists(), "is_dir": path.is_dir()}
        if path.exists():
            where = self._new("files/p")
            target = self.folder / where / (path.name or "root")
            entry["snapshot"] = f"{where}/{path.name or 'root'}"
            entry["copied"] = copy_answer(path, target, (self.folder, evidence_root(create=False)))
        return entry

    def _model(self, model) -> dict:
        if id(model) in self.seen:
            return {"t": "same", "as": self.seen[id(model)]}
        name = self._new("models/m")
        self.seen[id(model)] = name
        describe_model(model, self.folder / name)
        return {"t": "model", "dir": name}


def _plain_entry(value, depth: int = 0) -> dict | None:
    """None, bool, int, float, str and path names (Python's or NumPy's own types only), else None."""
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
    return None


def _torch_entry(value, depth: int = 0) -> dict | None:
    """dtypes, devices, integer scalar tensors and LoRA configs, else None."""
    kind = type(value)
    if kind is torch.dtype:
        return {"t": "dtype", "v": str(value).removeprefix("torch.")}
    if kind is torch.device:
        return {"t": "device", "v": str(value)}
    if kind is torch.Tensor and value.ndim == 0 and not value.is_floating_point() and value.device.type != "meta":
        return {"t": "int", "v": int(value.item()), "type": "Tensor"}
    if _is_lora_config(value):
        return {"t": "lora_config", "v": jsonable(value.to_dict())}
    return None


def _is_path(value) -> bool:
    return type(value) is str or (isinstance(value, PurePath) and type(value).__module__ == "pathlib")


def _is_lora_config(value) -> bool:
    return type(value) is LoraConfig


def _is_plain_function(value) -> bool:
    return type(value) in (types.FunctionType, types.MethodType, types.BuiltinFunctionType)


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
                "relations": relations(answers)}
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
        if kind in ("list", "tuple", "set", "frozenset"):
            return self._decode_items(kind, entry, depth)
        if kind == "dict":
            return self._decode_dict(entry, depth)
        decoder = {"none": lambda e: None, "bool": _scalar, "int": _scalar, "str": _scalar, "float": _float,
                   "dtype": _dtype, "device": _device, "path": self._decode_path, "pathname": _pathname,
                   "lora_config": lambda e: lora_config_from(e.get("v")),
                   "model": lambda e: self._rebuilt(e.get("dir")), "same": lambda e: self._rebuilt(e.get("as")),
                   "function": lambda e: Opaque(str(e.get("type", "function")), function=True),
                   "foreign": lambda e: Opaque(str(e.get("type", "?")), foreign=True),
                   "other": lambda e: Opaque(str(e.get("type", "?")))}.get(kind)
        if decoder is None:
            raise EvidenceError("the evidence holds an entry the course does not write")
        return decoder(entry)

    def _decode_items(self, kind: str, entry: dict, depth: int):
        items = [self._decode(v, depth + 1) for v in (entry.get("items") or [])[:MAX_ITEMS]]
        if kind in ("set", "frozenset"):
            try:
                return set(items) if kind == "set" else frozenset(items)
            except TypeError:
                return items
        return items if kind == "list" else tuple(items)

    def _decode_dict(self, entry: dict, depth: int) -> dict:
        out = {}
        for pair in (entry.get("items") or [])[:MAX_ITEMS]:
            if isinstance(pair, list) and len(pair) == 2:
                key = self._decode(pair[0], depth + 1)
                try:
                    out[key] = self._decode(pair[1], depth + 1)
                except TypeError:
                    continue
        return out

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


def _scalar(entry: dict):
    kind, value = entry.get("t"), entry.get("v")
    if type(value) is not {"bool": bool, "int": int, "str": str}[kind]:
        raise EvidenceError(f"the evidence holds a malformed {kind}")
    return value


def _float(entry: dict) -> float:
    value = entry.get("v")
    return float(value) if isinstance(value, (int, float, str)) else math.nan


def _dtype(entry: dict):
    found = getattr(torch, str(entry.get("v")), None)
    return found if isinstance(found, torch.dtype) else Opaque("dtype")


def _device(entry: dict):
    try:
        return torch.device(str(entry.get("v")))
    except (RuntimeError, TypeError):
        return Opaque("device")


def _pathname(entry: dict):
    value = entry.get("v")
    return Path(value) if isinstance(value, str) else Opaque("path")
