"""``diagnose``'s checks of the two files of an adapter folder, without the base model: ``adapter_config.json``
(read as JSON, its settings against those the installed peft knows) and the *header* of
``adapter_model.safetensors`` (each tensor's dtype, shape and byte range; the LoRA pairs against the config).

No torch, no peft import, nothing loaded or unpickled: the installed peft's settings and types are read from its
source. Each check adds findings to a ``Diagnosis`` (see ``diagnosis_report``). Defined in lessons 3 and 6 to 9.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

from . import diagnosis_report as read
from .adapter_format import LORA_KEY, matches_target, read_safetensors_header, tensor_entries, unmatched_targets
from .messages import one_line

MAX_CONFIG_BYTES = 10 * 1024 * 1024
# Bits per element of the safetensors dtypes, to check that each tensor's byte range fits its shape.
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64,
    "I64": 64, "U64": 64, "F64": 64,
}
# Embedding layers and LM heads that save_pretrained(save_embedding_layers=True) stores whole.
EMBEDDING_KEY = re.compile(r"\.(?:wte|embed_tokens|embed_in|embed_out|word_embeddings|shared|lm_head)\.weight$")
OTHER_LORA_KEY = re.compile(r"\.lora_(?:magnitude_vector|bias)\b")
FALLBACK_PEFT_TYPES = frozenset({"LORA", "ADALORA", "IA3", "LOHA", "LOKR", "OFT", "BOFT", "VERA", "PROMPT_TUNING",
                                 "PREFIX_TUNING", "P_TUNING", "ADAPTION_PROMPT", "XLORA", "FOURIERFT", "HRA"})
LORA_LIKE = frozenset({"LORA", "ADALORA"})
# The config classes whose dataclass fields make up a LoRA adapter_config.json, as (file in peft, class names).
CONFIG_CLASSES = {"LORA": (("config.py", ("PeftConfigMixin", "PeftConfig")), ("tuners/lora/config.py", ("LoraConfig",)))}
# Heads peft saves with a classification adapter (PeftModelForSequenceClassification adds these to modules_to_save).
CLASSIFICATION_TASKS = {"SEQ_CLS": ("classifier", "score"), "TOKEN_CLS": ("classifier", "score")}
ZERO3 = ("the weights were saved from a model whose parameters were partitioned (DeepSpeed ZeRO-3) and never "
         "gathered, so nothing of the trained adapter is in the file")
MIXED = "the config does not describe these weights (they come from different saves, or the config was edited)"
# Suffixes peft gives saved copies of whole modules (modules_to_save, trainable tokens), before ``.weight``.
EXTRA_SUFFIX = re.compile(r"(?:\.(?:modules_to_save|original_module)(?:\.[^.]+)?|\.token_adapter\.base_layer)?"
                          r"\.(?P<param>weight|bias)$")


@lru_cache(maxsize=1)
def known_peft_types() -> tuple[frozenset, str]:
    """The ``PeftType`` names of the installed peft, read from its source (importing peft costs seconds)."""
    try:
        peft_version = version("peft")
        spec = importlib.util.find_spec("peft")
        source = Path(next(iter(spec.submodule_search_locations))) / "utils" / "peft_types.py"
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name == "PeftType":
                names = {t.id for stmt in node.body if isinstance(stmt, ast.Assign) for t in stmt.targets
                         if isinstance(t, ast.Name)}
                if "LORA" in names:
                    return frozenset(names), f"peft {peft_version}"
    except Exception:  # no peft installed, or its layout changed: fall back to the common types
        pass
    return FALLBACK_PEFT_TYPES, "peft"


@lru_cache(maxsize=4)
def known_config_fields(peft_type: str) -> tuple[frozenset | None, str]:
    """The settings the installed peft's config class for ``peft_type`` accepts, read from its source.

    ``(None, "")`` when that cannot be read (no peft, another layout) or the type is not one we know the class of.
    """
    try:
        root = Path(next(iter(importlib.util.find_spec("peft").submodule_search_locations)))
        names: set = set()
        for rel, classes in CONFIG_CLASSES[peft_type]:
            tree = ast.parse((root / rel).read_text(encoding="utf-8"))
            for node in tree.body:
                if isinstance(node, ast.ClassDef) and node.name in classes:
                    names |= {s.target.id for s in node.body
                              if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}
        if {"peft_type", "r", "target_modules"} <= names:
            return frozenset(names), f"peft {version('peft')}"
    except (KeyError, AttributeError, TypeError, StopIteration, OSError, SyntaxError, ValueError):
        return None, ""  # a type we do not map, no peft installed, or its layout changed: skip this check
    return None, ""


def short(names) -> str:
    """At most four names, sorted, then how many more."""
    names = sorted(names)
    return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


# ----- adapter_config.json ----------------------------------------------------------------------------------------
def read_config(path: Path, d) -> dict | None:
    """The config as a dict, or None (and a finding) when it cannot be read as a JSON object."""
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            d.add(f"adapter_config.json is {size:,} bytes, far too large for an adapter config: it is not one",
                  read.CONFIG_FILE)
            return None
        raw = path.read_bytes()
    except OSError as exc:
        d.add(f"adapter_config.json cannot be read ({one_line(exc)}): your permissions on the file stop it",
              read.DIAGNOSE)
        return None
    if not raw.strip():
        d.add("adapter_config.json is empty: the save was interrupted", read.CONFIG_FILE)
        return None
    try:
        config = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        d.add("adapter_config.json is not UTF-8 text: the file is corrupted", read.CONFIG_FILE)
        return None
    except json.JSONDecodeError as exc:
        d.add(f"adapter_config.json is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}): it was "
              "cut short or edited by hand", read.CONFIG_FILE)
        return None
    except RecursionError:
        d.add("adapter_config.json is nested too deeply to be an adapter config: the file is corrupted",
              read.CONFIG_FILE)
        return None
    if not isinstance(config, dict):
        d.add(f"adapter_config.json holds a JSON {type(config).__name__}, not an object of settings", read.CONFIG_FILE)
        return None
    return config


def check_config_fields(config: dict, d) -> str | None:
    """The config's peft type when it is one the installed peft knows; findings for missing or odd settings."""
    if "peft_type" not in config:
        d.add('adapter_config.json has no "peft_type" field, so peft cannot tell which kind of adapter to build',
              read.CONFIG_FILE)
        return None
    peft_type = config["peft_type"]
    known, source = known_peft_types()
    if not isinstance(peft_type, str) or peft_type not in known:
        close = [k for k in sorted(known) if isinstance(peft_type, str) and k.lower() == peft_type.lower()]
        case = f"; it differs only in letter case from the known type {close[0]!r}" if close else ""
        d.add(f"adapter_config.json has an unknown peft_type {peft_type!r} ({source} knows {len(known)} types, e.g. "
              f"LORA, ADALORA, IA3, LOHA){case}", read.CONFIG_FILE)
        return None
    if peft_type in LORA_LIKE:
        _check_lora_settings(config, d)
    _check_unknown_settings(config, peft_type, d)
    return peft_type


def _check_lora_settings(config: dict, d) -> None:
    r, tm, alpha = config.get("r"), config.get("target_modules"), config.get("lora_alpha")
    if "r" not in config:
        d.add('adapter_config.json has no "r" field (the LoRA rank), which the shapes of the LoRA matrices '
              "depend on", read.CONFIG_SETTINGS)
    elif isinstance(r, bool) or not isinstance(r, int) or r <= 0:
        d.add(f'adapter_config.json has "r": {json.dumps(r)}, but the LoRA rank is a positive whole number',
              read.CONFIG_SETTINGS)
    if tm is None and config.get("target_parameters") is None:
        d.add('adapter_config.json has no "target_modules" field, so peft does not know which layers the weights '
              "belong to", read.CONFIG_SETTINGS)
    elif tm is not None and not (isinstance(tm, str) or (isinstance(tm, list) and tm
                                                        and all(isinstance(t, str) for t in tm))):
        d.add(f'adapter_config.json has "target_modules": {json.dumps(tm)[:80]}, which is neither a list of module '
              "names nor a regular expression", read.CONFIG_SETTINGS)
    if "lora_alpha" in config and (isinstance(alpha, bool) or not isinstance(alpha, (int, float))):
        d.add(f'adapter_config.json has "lora_alpha": {json.dumps(alpha)[:40]}, which is not a number',
              read.CONFIG_SETTINGS)


def _check_unknown_settings(config: dict, peft_type: str, d) -> None:
    fields, source = known_config_fields(peft_type)
    unknown = sorted(k for k in config if fields is not None and k not in fields)
    if unknown:
        saved_by = config.get("peft_version")
        by = f" (the file says peft {saved_by})" if isinstance(saved_by, str) else ""
        d.add(f"adapter_config.json has {len(unknown)} setting(s) {source} does not know ({short(unknown)}): it was "
              f"saved by a newer peft{by}; this peft warns 'Unexpected keyword arguments ... ignored' and loads the "
              "adapter without them, so it may compute something else than the adapter that was saved",
              read.NEWER_PEFT)


# ----- adapter_model.safetensors ----------------------------------------------------------------------------------
def read_weights_header(path: Path, d) -> dict | None:
    """The safetensors header, or None (and a finding) when the file is not a valid safetensors file."""
    try:
        size = path.stat().st_size
        if size == 0:
            d.add("adapter_model.safetensors is empty (0 bytes): the save was interrupted", read.WEIGHTS_FILE)
            return None
        with path.open("rb") as f:
            magic = f.read(4)
        if magic.startswith(b"PK\x03\x04"):
            d.add("adapter_model.safetensors starts like a zip archive: it is a PyTorch pickle (zip) file renamed to "
                  ".safetensors, and unpickling it can run code", read.PICKLE)
            return None
        header = read_safetensors_header(path)
    except OSError as exc:
        d.add(f"adapter_model.safetensors cannot be read ({one_line(exc)}): your permissions on the file stop it",
              read.DIAGNOSE)
        return None
    except ValueError as exc:
        d.add(str(exc), read.WEIGHTS_FILE)
        return None
    bad = next(filter(None, (_bad_tensor(name, info) for name, info in tensor_entries(header).items())), None)
    if bad:
        d.add(f"adapter_model.safetensors: {bad}: the file is corrupted", read.WEIGHTS_FILE)
        return None
    return header


def _bad_tensor(name: str, info: dict) -> str:
    """What is wrong with one tensor's header entry (dtype, shape, byte range), or ``""``."""
    dtype, shape = info.get("dtype"), info.get("shape")
    if dtype not in DTYPE_BITS:
        return f"tensor {name!r} has an unknown dtype {dtype!r}"
    if not (isinstance(shape, list) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
        return f"tensor {name!r} has an invalid shape {shape!r}"
    numel = 1
    for n in shape:
        numel *= n
    start, end = info["data_offsets"]
    need = (numel * DTYPE_BITS[dtype] + 7) // 8
    return "" if need == end - start else (f"tensor {name!r} ({dtype}, shape {shape}) should take {need} bytes but "
                                           f"its range holds {end - start}")


def check_not_empty(header: dict, size: int, d) -> bool:
    """False (and a finding) when the weights file holds no tensors, or tensors with no elements."""
    tensors = tensor_entries(header)
    if not tensors:
        d.add(f"adapter_model.safetensors holds no tensors at all (a {size}-byte file): {ZERO3}", read.ZERO3)
        return False
    empty = sorted(k for k, info in tensors.items() if 0 in info["shape"])
    if empty:
        d.add(f"adapter_model.safetensors holds {len(empty)} empty tensor(s) of {len(tensors)} (e.g. {empty[0]!r} has "
              f"shape {tensors[empty[0]]['shape']}): {ZERO3}", read.ZERO3)
        return False
    return True


@dataclass
class LoraTensors:
    """LoRA tensors grouped by the module they adapt: ``{module path: {"A": (key, shape), "B": ...}}``."""

    modules: dict
    extra_modules: dict = field(default_factory=dict)  # {module path: {param: (key, shape)}} of modules_to_save etc.


def _expected_rank(config: dict, module: str):
    pattern = config.get("rank_pattern") or {}
    if isinstance(pattern, dict):
        for key, value in pattern.items():
            try:
                if re.match(rf"(.*\.)?{key}$", module):
                    return value
            except (re.error, TypeError):
                continue
    return config.get("r")


def _extra_module(key: str) -> tuple[str, str] | None:
    """``(module path, "weight" or "bias")`` of a saved non-LoRA tensor key, or None."""
    name = key.removeprefix("base_model.model.")
    m = EXTRA_SUFFIX.search(name)
    return (name[: m.start()], m["param"]) if m else None


def check_lora_tensors(config: dict, header: dict, d) -> LoraTensors | None:
    """The LoRA tensors by module, with findings where they disagree with the config or with each other."""
    modules: dict = {}
    others = []
    for key, info in tensor_entries(header).items():
        m = LORA_KEY.match(key)
        if m:
            modules.setdefault(m["module"], {})[m["ab"]] = (key, tuple(info["shape"]))
        elif not OTHER_LORA_KEY.search(key):
            others.append(key)
    if not modules:
        d.add("adapter_model.safetensors holds no LoRA tensors (no lora_A / lora_B names"
              + (f"; e.g. {others[0]!r}" if others else ", it is empty") + "): it is not a LoRA adapter's weights file",
              read.WEIGHTS_FILE)
        return None
    extras_allowed = (config.get("modules_to_save") or config.get("trainable_token_indices")
                      or config.get("bias", "none") != "none")
    if others and not extras_allowed and not all(EMBEDDING_KEY.search(k) for k in others):
        d.add(f"adapter_model.safetensors holds {len(others)} tensor(s) that are not LoRA weights (e.g. {others[0]!r}) "
              "and the config saves no extra modules: the file was written by something else (a full model's save?)",
              read.WEIGHTS_FILE)
    _check_targets(config, modules, d)
    _check_pairs_and_ranks(config, modules, d)
    extra: dict = {}
    for key in others:
        found = _extra_module(key)
        if found:
            extra.setdefault(found[0], {})[found[1]] = (key, tuple(header[key]["shape"]))
    return LoraTensors(modules, extra)


def _check_targets(config: dict, modules: dict, d) -> None:
    tm = config.get("target_modules")
    untargeted = sorted(m for m in modules if not matches_target(m, tm))
    if untargeted:
        names = {m.rsplit(".", 1)[-1] for m in untargeted}
        d.add(f"adapter_model.safetensors has LoRA weights for {len(untargeted)} module(s) named {short(names)} "
              f"(e.g. {untargeted[0]!r}) that target_modules {json.dumps(tm)} does not include: {MIXED}",
              read.CONFIG_SETTINGS)
    unused = unmatched_targets(tm, modules) if isinstance(tm, list) else []
    if unused:
        d.add(f"target_modules lists {short(unused)} but adapter_model.safetensors has no LoRA weights for such "
              f"modules: {MIXED}", read.CONFIG_SETTINGS)


def _check_pairs_and_ranks(config: dict, modules: dict, d) -> None:
    half = sorted(m for m, ab in modules.items() if len(ab) != 2)
    if half:
        missing = "lora_B" if "A" in modules[half[0]] else "lora_A"
        d.add(f"{len(half)} LoRA module(s) have only one of lora_A / lora_B (e.g. {half[0]!r} lacks {missing}): the "
              "weights file is incomplete or its tensor names were altered", read.WEIGHTS_FILE)
    bad_dims, bad_rank = [], {}
    for module, ab in sorted(modules.items()):
        expected = _expected_rank(config, module)
        for part, (key, shape) in sorted(ab.items()):
            if len(shape) != 2:
                bad_dims.append((key, shape))
                continue
            rank = shape[0] if part == "A" else shape[1]
            if isinstance(expected, int) and not isinstance(expected, bool) and expected > 0 and rank != expected:
                bad_rank.setdefault((rank, expected), []).append((key, shape))
    if bad_dims:
        key, shape = bad_dims[0]
        d.add(f"{len(bad_dims)} LoRA tensor(s) are not 2-D matrices (e.g. {key!r} has shape {list(shape)}): the "
              "weights file is corrupted", read.WEIGHTS_FILE)
    for (rank, expected), items in sorted(bad_rank.items()):
        key, shape = items[0]
        d.add(f"{len(items)} LoRA tensor(s) have rank {rank} but adapter_config.json gives these modules rank "
              f"{expected} (from \"r\" or \"rank_pattern\"): e.g. {key!r} has shape {list(shape)}, and a lora_A is "
              "[rank, inputs], a lora_B [outputs, rank]; peft builds the layers from the config, so the saved "
              "tensors do not fit them ('size mismatch' on load)", read.RANK)


def check_head_saved(config: dict, lora: LoraTensors, d) -> None:
    """A classification adapter must carry its head; every ``modules_to_save`` entry must have saved tensors."""
    saved = lora.extra_modules
    mts = config.get("modules_to_save")
    mts = [m for m in mts if isinstance(m, str)] if isinstance(mts, list) else []
    task = config.get("task_type")
    heads = CLASSIFICATION_TASKS.get(task) if isinstance(task, str) else None
    if heads and not any(matches_target(m, list(heads) + mts) for m in saved):
        d.add(f"this is a classification adapter (task_type {task}) but its weights hold no classification head "
              f"(no {' or '.join(heads)} tensor; modules_to_save is {json.dumps(mts or None)}): the head will be "
              "initialised at random on each load, and transformers reports it as newly initialized / MISSING",
              read.HEADS)
        return
    unsaved = [m for m in mts if m not in (heads or ()) and not any(matches_target(s, [m]) for s in saved)]
    if unsaved:
        d.add(f"modules_to_save lists {short(unsaved)} but adapter_model.safetensors holds no weights for it: those "
              "modules will keep the base model's weights on load", read.HEADS)
