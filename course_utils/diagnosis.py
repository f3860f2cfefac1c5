"""``diagnose(path)``: what is wrong with an adapter folder, one line per problem, each with its fix.

Defined in lesson 3 (``diagnose``, ``python -m course_utils diagnose PATH [--base MODEL]``); lessons 6 and 7 add the
failures of training and shipping: empty (ZeRO-3) saves, settings from a newer peft, embeddings saved for added
tokens, classification heads, renamed module paths.

Without a base model it reads only ``adapter_config.json`` and the safetensors *header* (no torch, no
peft import, nothing loaded or unpickled), so it answers in a fraction of a second. With ``base_model``
it also builds the base model's skeleton on the ``meta`` device (no weights read) through transformers,
to check that the adapter's target modules exist there and that its tensors fit them.
It never writes to the folder and never raises: every finding, even an unexpected one, is a line.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

from .adapter_format import (
    CONFIG_FILE,
    LORA_KEY,
    PICKLE_WEIGHTS_FILE,
    WEIGHTS_FILE,
    in_out_features,
    matches_target,
    read_safetensors_header,
    tensor_entries,
    unmatched_targets,
)
from .assets import course_model
from .messages import one_line

MAX_CONFIG_BYTES = 10 * 1024 * 1024
INTERNAL_ERROR = "diagnose hit an unexpected error"

# Bits per element of the safetensors dtypes, to check that each tensor's byte range fits its shape.
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64,
    "I64": 64, "U64": 64, "F64": 64,
}
# lora_A / lora_B (and lora_embedding_A / _B) weights, with or without the adapter name peft strips on save.
# Embedding layers and LM heads that save_pretrained(save_embedding_layers=True) stores whole.
EMBEDDING_KEY = re.compile(r"\.(?:wte|embed_tokens|embed_in|embed_out|word_embeddings|shared|lm_head)\.weight$")
OTHER_LORA_KEY = re.compile(r"\.lora_(?:magnitude_vector|bias)\b")
FALLBACK_PEFT_TYPES = frozenset({"LORA", "ADALORA", "IA3", "LOHA", "LOKR", "OFT", "BOFT", "VERA", "PROMPT_TUNING",
                                 "PREFIX_TUNING", "P_TUNING", "ADAPTION_PROMPT", "XLORA", "FOURIERFT", "HRA"})
LORA_LIKE = frozenset({"LORA", "ADALORA"})


@dataclass
class Diagnosis:
    """The result of ``diagnose``: ``ok``, the ``problems`` (one line each, with the fix) and a ``summary``."""

    path: str
    problems: list[str] = field(default_factory=list)
    summary: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, line: str) -> None:
        self.problems.append(" ".join(str(line).split()))

    def __str__(self) -> str:
        if self.ok:
            return self.summary
        head = f"{self.path}: {len(self.problems)} problem{'s' if len(self.problems) > 1 else ''} found"
        return "\n".join([head] + [f"  - {p}" for p in self.problems])


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


# The config classes whose dataclass fields make up a LoRA adapter_config.json, as (file in peft, class names).
CONFIG_CLASSES = {"LORA": (("config.py", ("PeftConfigMixin", "PeftConfig")), ("tuners/lora/config.py", ("LoraConfig",)))}
# Heads peft saves with a classification adapter (PeftModelForSequenceClassification adds these to modules_to_save).
CLASSIFICATION_TASKS = {"SEQ_CLS": ("classifier", "score"), "TOKEN_CLS": ("classifier", "score")}
ZERO3_FIX = ("the weights were saved from a model whose parameters were partitioned (DeepSpeed ZeRO-3) without "
             "gathering them: save through the Trainer (trainer.save_model() gathers them), or pass "
             "state_dict=accelerator.get_state_dict(model) to model.save_pretrained(...), then save again")


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


def _listing(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return sorted(it, key=lambda e: e.name)


def _is_full_model(names: set[str]) -> bool:
    return "config.json" in names and ("model.safetensors" in names or "model.safetensors.index.json" in names
                                       or "pytorch_model.bin" in names)


def diagnose(path, base_model: str | None = None) -> Diagnosis:
    """Check an adapter folder without loading it; see the module docstring. Never raises, never writes."""
    d = Diagnosis(str(path))
    try:
        _diagnose(Path(path), str(path), base_model, d)
    except Exception as exc:  # a bug here must still be one line, not a traceback
        d.add(f"{INTERNAL_ERROR} ({one_line(exc)}): the folder was not changed; please report this to the course.")
    return d


def _diagnose(p: Path, shown: str, base_model, d: Diagnosis) -> None:
    # 1. The path itself.
    try:
        exists, is_dir = p.exists(), p.is_dir()
    except OSError as exc:
        d.add(f"{shown} cannot be checked ({one_line(exc)}): check the path and your permissions on its parent folder.")
        return
    if not exists:
        d.add(f"{shown} does not exist: check the path for typos, or run the cell that saves the adapter first.")
        return
    if not is_dir:
        hint = f" (for this file, that is {p.parent})" if p.name in (CONFIG_FILE, WEIGHTS_FILE, PICKLE_WEIGHTS_FILE) else ""
        d.add(f"{shown} is a file, not a folder: pass the folder that holds adapter_config.json{hint}.")
        return
    try:
        entries = _listing(p)
    except OSError as exc:
        d.add(f"{shown} cannot be read ({one_line(exc)}): give yourself read access, e.g. `chmod -R u+rX {shown}`.")
        return
    files = {e.name: e for e in entries if e.is_file()}
    subdirs = [e.name for e in entries if e.is_dir() and (Path(e.path) / CONFIG_FILE).is_file()]

    # 2. Not an adapter folder at all?
    if CONFIG_FILE not in files:
        if subdirs:
            first = subdirs[0]
            d.add(f"{shown} has no adapter_config.json but holds {len(subdirs)} adapter(s) in subfolders "
                  f"({', '.join(subdirs)}): a multi-adapter save; load one with "
                  f"PeftModel.from_pretrained(base, \"{shown}\", subfolder=\"{first}\") "
                  f"or pass its full path \"{p / first}\".")
            for name in subdirs:
                sub = diagnose(p / name, base_model)
                d.problems += [f"in subfolder {name}: {line}" for line in sub.problems]
        elif _is_full_model(set(files)):
            d.add(f"{shown} holds a full model (config.json + model weights, no adapter_config.json), e.g. saved after "
                  f"merge_and_unload(), not an adapter: load it with AutoModelForCausalLM.from_pretrained(\"{shown}\") "
                  "and no PeftModel, or pass the folder where the adapter itself was saved.")
        elif not entries:
            d.add(f"{shown} is an empty folder: nothing was saved there; save the adapter with "
                  f"model.save_pretrained(\"{shown}\") (or pass the folder you saved it to).")
        else:
            shown_files = ", ".join(e.name for e in entries[:6]) + (", ..." if len(entries) > 6 else "")
            d.add(f"{shown} has no adapter_config.json, so it is not a saved adapter (it holds: {shown_files}): "
                  "pass the folder that model.save_pretrained(...) wrote.")
        return

    leftover = _is_full_model(set(files)) and WEIGHTS_FILE not in files and PICKLE_WEIGHTS_FILE not in files
    if leftover:
        d.add(f"{shown} holds a merged full model (config.json + model.safetensors) and an adapter_config.json left "
              "from an adapter save, so loaders take the folder for an adapter: save the merged model into a clean "
              f"folder (course_utils.merge_to_folder) or delete {p / CONFIG_FILE}.")
    elif _is_full_model(set(files)):
        d.add(f"{shown} holds both an adapter (adapter_config.json + weights) and a full model (config.json + "
              "model.safetensors), e.g. a merged model saved over the adapter's folder, and loaders take it for the "
              "adapter: keep them in separate folders (course_utils.merge_to_folder saves both safely).")

    # 3. The config.
    config = _read_config(p / CONFIG_FILE, d)
    peft_type = None
    if config is not None:
        peft_type = _check_config_fields(config, d)

    # 4. The weights file.
    header = None
    if WEIGHTS_FILE in files:
        header = _read_weights_header(p / WEIGHTS_FILE, d)
    elif PICKLE_WEIGHTS_FILE in files:
        size = files[PICKLE_WEIGHTS_FILE].stat().st_size
        state = "is empty (0 bytes) and " if size == 0 else ""
        d.add(f"{shown} has only adapter_model.bin, which {state}is a pickle file that can run code when loaded: load it "
              "only with torch.load(path, weights_only=True) (course_utils.load_bin_adapter_weights), then re-save "
              "the adapter with model.save_pretrained(...) to get adapter_model.safetensors.")
    elif not leftover:
        d.add(f"{shown} has adapter_config.json but no adapter_model.safetensors: the save was interrupted or only the "
              "config was written (LoraConfig.save_pretrained writes no weights); save the PeftModel with "
              "model.save_pretrained(...) (peft reports this case as a confusing 'Repo id must be in the form' error).")

    # 5. Weights against config, then against the base model.
    lora = None
    has_tensors = header is not None and _check_not_empty(header, files[WEIGHTS_FILE].stat().st_size, d)
    if has_tensors and config is not None and peft_type in LORA_LIKE:
        lora = _check_lora_tensors(config, header, d)
        if lora:
            _check_head_saved(config, lora, d)
    if base_model is not None and lora and not leftover:
        _check_base(config, lora, base_model, d)

    if d.ok:
        d.summary = _summary(shown, config, header, files, subdirs, base_model, lora)


def _read_config(path: Path, d: Diagnosis):
    fix = "restore it from the original save, or save the adapter again with model.save_pretrained(...)"
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            d.add(f"adapter_config.json is {size:,} bytes, far too large for an adapter config: it is not one; {fix}.")
            return None
        raw = path.read_bytes()
    except OSError as exc:
        d.add(f"adapter_config.json cannot be read ({one_line(exc)}): give yourself read access, e.g. `chmod u+r {path}`.")
        return None
    if not raw.strip():
        d.add(f"adapter_config.json is empty: the save was interrupted; {fix}.")
        return None
    try:
        config = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        d.add(f"adapter_config.json is not UTF-8 text: the file is corrupted; {fix}.")
        return None
    except json.JSONDecodeError as exc:
        d.add(f"adapter_config.json is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}): it was cut "
              f"short or edited by hand; {fix}.")
        return None
    except RecursionError:
        d.add(f"adapter_config.json is nested too deeply to be an adapter config: the file is corrupted; {fix}.")
        return None
    if not isinstance(config, dict):
        d.add(f"adapter_config.json holds a JSON {type(config).__name__}, not an object of settings: {fix}.")
        return None
    return config


def _check_config_fields(config: dict, d: Diagnosis):
    peft_type = config.get("peft_type")
    if "peft_type" not in config:
        d.add('adapter_config.json has no "peft_type" field: add "peft_type": "LORA" for a LoRA adapter, or save the '
              "adapter again with model.save_pretrained(...).")
        return None
    known, source = known_peft_types()
    if not isinstance(peft_type, str) or peft_type not in known:
        close = [k for k in sorted(known) if isinstance(peft_type, str) and k.lower() == peft_type.lower()]
        hint = f'write "{close[0]}"' if close else 'a LoRA adapter has "peft_type": "LORA"'
        d.add(f"adapter_config.json has an unknown peft_type {peft_type!r} ({source} knows {len(known)} types, e.g. "
              f"LORA, ADALORA, IA3, LOHA): fix the value; {hint}.")
        return None
    if peft_type in LORA_LIKE:
        r = config.get("r")
        if "r" not in config:
            d.add('adapter_config.json has no "r" field (the LoRA rank): set it to the rank the weights were trained '
                  "with (the first dimension of each lora_A tensor), or restore the original config.")
        elif isinstance(r, bool) or not isinstance(r, int) or r <= 0:
            d.add(f'adapter_config.json has "r": {json.dumps(r)}, but the LoRA rank must be a positive whole number: '
                  "set it to the rank the weights were trained with, or restore the original config.")
        tm = config.get("target_modules")
        if "target_modules" not in config or tm is None:
            if config.get("target_parameters") is None:
                d.add('adapter_config.json has no "target_modules" field: set it to the list of module names the '
                      'weights belong to (e.g. ["c_attn", "c_proj", "c_fc"]), or restore the original config.')
        elif not (isinstance(tm, str) or (isinstance(tm, list) and tm and all(isinstance(t, str) for t in tm))):
            d.add(f'adapter_config.json has "target_modules": {json.dumps(tm)[:80]}, which is neither a list of module '
                  'names nor a regex string: write e.g. ["c_attn", "c_proj", "c_fc"], or restore the original config.')
        alpha = config.get("lora_alpha")
        if "lora_alpha" in config and (isinstance(alpha, bool) or not isinstance(alpha, (int, float))):
            d.add(f'adapter_config.json has "lora_alpha": {json.dumps(alpha)[:40]}, not a number: set it to the value '
                  "used in training (often 2 x r), or restore the original config.")
    fields, source = known_config_fields(peft_type)
    unknown = sorted(k for k in config if fields is not None and k not in fields)
    if unknown:
        saved_by = config.get("peft_version")
        by = f" (the file says peft {saved_by})" if isinstance(saved_by, str) else ""
        d.add(f"adapter_config.json has {len(unknown)} setting(s) {source} does not know ({_short(unknown)}): it was "
              f"saved by a newer peft{by}, and this peft warns 'Unexpected keyword arguments ... ignored' and loads "
              "the adapter without them, so it may behave differently: install the peft version that saved it "
              "(pip install -U peft), or delete the key(s) only if you know they are at their default.")
    return peft_type


def _read_weights_header(path: Path, d: Diagnosis):
    fix = "save the adapter again with model.save_pretrained(...) or restore a good copy"
    try:
        size = path.stat().st_size
        if size == 0:
            d.add(f"adapter_model.safetensors is empty (0 bytes): the save was interrupted; {fix}.")
            return None
        with path.open("rb") as f:
            magic = f.read(4)
        if magic.startswith(b"PK\x03\x04"):
            d.add("adapter_model.safetensors is a PyTorch pickle (zip) file renamed to .safetensors: rename it to "
                  "adapter_model.bin and load it only with course_utils.load_bin_adapter_weights, then re-save; "
                  f"or {fix}.")
            return None
        header = read_safetensors_header(path)
    except OSError as exc:
        d.add(f"adapter_model.safetensors cannot be read ({one_line(exc)}): give yourself read access, e.g. "
              f"`chmod u+r {path}`.")
        return None
    except ValueError as exc:
        d.add(f"{str(exc).rstrip('.')}: {fix}.")
        return None
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape = info.get("dtype"), info.get("shape")
        if dtype not in DTYPE_BITS:
            d.add(f"adapter_model.safetensors: tensor {name!r} has an unknown dtype {dtype!r}: the file is corrupted; {fix}.")
            return None
        if not (isinstance(shape, list) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                                  for n in shape)):
            d.add(f"adapter_model.safetensors: tensor {name!r} has an invalid shape {shape!r}: the file is corrupted; {fix}.")
            return None
        numel = 1
        for n in shape:
            numel *= n
        start, end = info["data_offsets"]
        if (numel * DTYPE_BITS[dtype] + 7) // 8 != end - start:
            d.add(f"adapter_model.safetensors: tensor {name!r} ({dtype}, shape {shape}) should take "
                  f"{(numel * DTYPE_BITS[dtype] + 7) // 8} bytes but its range holds {end - start}: the file is "
                  f"corrupted; {fix}.")
            return None
    return header


@dataclass
class LoraTensors:
    """LoRA tensors grouped by the module they adapt: ``{module path: {"A": (key, shape), "B": ...}}``."""

    modules: dict
    rank_of: dict
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


def _short(names) -> str:
    names = sorted(names)
    return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def _check_lora_tensors(config: dict, header: dict, d: Diagnosis):
    fix_mix = "the config and the weights come from different saves: restore the adapter_config.json saved with these weights"
    modules: dict = {}
    others = []
    for key, info in header.items():
        if key == "__metadata__":
            continue
        m = LORA_KEY.match(key)
        if m:
            modules.setdefault(m["module"], {})[m["ab"]] = (key, tuple(info["shape"]))
        elif not OTHER_LORA_KEY.search(key):
            others.append(key)
    if not modules:
        d.add("adapter_model.safetensors holds no LoRA tensors (no lora_A / lora_B names"
              + (f"; e.g. {others[0]!r}" if others else ", it is empty") + "): it is not a LoRA adapter's weights file; "
              "save the PeftModel with model.save_pretrained(...).")
        return None
    extras_allowed = (config.get("modules_to_save") or config.get("trainable_token_indices")
                      or config.get("bias", "none") != "none")
    if others and not extras_allowed and not all(EMBEDDING_KEY.search(k) for k in others):
        d.add(f"adapter_model.safetensors holds {len(others)} tensor(s) that are not LoRA weights (e.g. {others[0]!r}) "
              "and the config saves no extra modules: the file was written by something else (a full model's "
              "save?); save the adapter again with model.save_pretrained(...).")

    # Which module names does each tensor belong to, and are they targeted?
    untargeted = sorted(m for m in modules if not matches_target(m, config.get("target_modules")))
    if untargeted:
        names = {m.rsplit(".", 1)[-1] for m in untargeted}
        d.add(f"adapter_model.safetensors has LoRA weights for {len(untargeted)} module(s) named {_short(names)} "
              f"(e.g. {untargeted[0]!r}) that target_modules {json.dumps(config.get('target_modules'))} does not "
              f"include: {fix_mix}, or add {_short(names)} to target_modules.")
    tm = config.get("target_modules")
    if isinstance(tm, list):
        unused = unmatched_targets(tm, modules)
        if unused:
            d.add(f"target_modules lists {_short(unused)} but adapter_model.safetensors has no LoRA weights for such "
                  f"modules: {fix_mix}, or remove {_short(unused)} from target_modules.")

    half = sorted(m for m, ab in modules.items() if len(ab) != 2)
    if half:
        missing = "lora_B" if "A" in modules[half[0]] else "lora_A"
        d.add(f"{len(half)} LoRA module(s) have only one of lora_A / lora_B (e.g. {half[0]!r} lacks {missing}): the "
              "weights file is incomplete or its tensor names were altered; save the adapter again.")

    rank_of: dict = {}
    bad_dims, bad_rank = [], {}
    for module, ab in sorted(modules.items()):
        for part, (key, shape) in sorted(ab.items()):
            if len(shape) != 2:
                bad_dims.append((key, shape))
                continue
            rank = shape[0] if part == "A" else shape[1]
            expected = _expected_rank(config, module)
            rank_of.setdefault(module, rank)
            if isinstance(expected, int) and not isinstance(expected, bool) and expected > 0 and rank != expected:
                bad_rank.setdefault((rank, expected), []).append((key, shape))
    if bad_dims:
        key, shape = bad_dims[0]
        d.add(f"{len(bad_dims)} LoRA tensor(s) are not 2-D matrices (e.g. {key!r} has shape {list(shape)}): the "
              "weights file is corrupted; save the adapter again.")
    for (rank, expected), items in sorted(bad_rank.items()):
        key, shape = items[0]
        d.add(f"{len(items)} LoRA tensor(s) have rank {rank} but adapter_config.json says r={expected} (e.g. {key!r} "
              f"has shape {list(shape)}): {fix_mix}, or set \"r\": {rank}.")
    extra: dict = {}
    for key in others:
        found = _extra_module(key)
        if found:
            extra.setdefault(found[0], {})[found[1]] = (key, tuple(header[key]["shape"]))
    return LoraTensors(modules, rank_of, extra)


def _resolve_base(name: str) -> str:
    return course_model() if name.strip().lower() in ("course", "shipped", "") else name


def _base_skeleton(name: str, config: dict):
    """The base model's modules on the meta device (no weights read), via transformers."""
    # Imported here, not at the top: without --base, diagnose reads two files and must not pay ~4 s for torch.
    import torch
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    cfg = AutoConfig.from_pretrained(name, local_files_only=True)
    auto = {None: AutoModelForCausalLM, "CAUSAL_LM": AutoModelForCausalLM, "SEQ_CLS": AutoModelForSequenceClassification,
            "TOKEN_CLS": AutoModelForTokenClassification}.get(config.get("task_type"), AutoModel)
    with torch.device("meta"):
        model = auto.from_config(cfg)
    return dict(model.named_modules())


def _check_not_empty(header: dict, size: int, d: Diagnosis) -> bool:
    """False (and a problem) when the weights file holds no tensors, or tensors with no elements."""
    tensors = tensor_entries(header)
    if not tensors:
        d.add(f"adapter_model.safetensors holds no tensors at all (a {size}-byte file): {ZERO3_FIX}.")
        return False
    empty = sorted(k for k, info in tensors.items() if 0 in info["shape"])
    if empty:
        d.add(f"adapter_model.safetensors holds {len(empty)} empty tensor(s) of {len(tensors)} (e.g. {empty[0]!r} has "
              f"shape {tensors[empty[0]]['shape']}): {ZERO3_FIX}.")
        return False
    return True


def _check_head_saved(config: dict, lora: LoraTensors, d: Diagnosis) -> None:
    """A classification adapter must carry its head; every ``modules_to_save`` entry must have saved tensors."""
    saved = lora.extra_modules
    mts = config.get("modules_to_save")
    mts = [m for m in mts if isinstance(m, str)] if isinstance(mts, list) else []
    task = config.get("task_type")
    heads = CLASSIFICATION_TASKS.get(task) if isinstance(task, str) else None
    if heads and not any(matches_target(m, list(heads) + mts) for m in saved):
        d.add(f"this is a classification adapter (task_type {task}) but its weights hold no classification head "
              f"(no {' or '.join(heads)} tensor): the head will be initialised at random on load (transformers "
              "reports it as newly initialized / MISSING); train again with the head in modules_to_save "
              '(e.g. modules_to_save=["score"] for GPT-2) and save.')
    elif mts:
        unsaved = [m for m in mts if m not in (heads or ()) and not any(matches_target(s, [m]) for s in saved)]
        if unsaved:
            d.add(f"modules_to_save lists {_short(unsaved)} but adapter_model.safetensors holds no weights for it: "
                  "those modules will keep the base model's weights on load; save the adapter again from the trained "
                  "PeftModel with model.save_pretrained(...).")


# Suffixes peft gives saved copies of whole modules (modules_to_save, trainable tokens), before ``.weight``.
EXTRA_SUFFIX = re.compile(r"(?:\.(?:modules_to_save|original_module)(?:\.[^.]+)?|\.token_adapter\.base_layer)?"
                          r"\.(?P<param>weight|bias)$")


def _extra_module(key: str) -> tuple[str, str] | None:
    """``(module path, "weight" or "bias")`` of a saved non-LoRA tensor key, or None."""
    name = key.removeprefix("base_model.model.")
    m = EXTRA_SUFFIX.search(name)
    return (name[: m.start()], m["param"]) if m else None


def _renamed_hint(missing: str, base: dict) -> str:
    """How the adapter's module path differs from the base's, when only a prefix differs."""
    parts = missing.split(".")
    for k in range(1, len(parts)):
        if ".".join(parts[k:]) in base:
            old, new = ".".join(parts[:k]) + ".", ""
            break
    else:
        longer = sorted(b for b in base if b.endswith("." + missing))
        if not longer:
            return ""
        old, new = "", longer[0][: -len(missing)]
    return (f"; only a prefix differs ({missing!r} here, {new + missing[len(old):]!r} in the base): the module paths "
            f"were renamed (e.g. by a transformers refactor), so rename the keys' prefix {old or '(none)'!r} to "
            f"{new or '(none)'!r} (PeftModel.from_pretrained(..., key_mapping={{...}}) or re-save the renamed "
            "tensors), or load onto the model version it was made for")


def _vocab_size(module) -> int | None:
    return int(module.weight.shape[0]) if type(module).__name__ == "Embedding" else None


def _check_base(config: dict, lora: LoraTensors, base_model: str, d: Diagnosis) -> None:
    path = _resolve_base(base_model)
    name = base_model if base_model.strip() else "course"  # as the user wrote it: no machine-specific path
    trained_on = config.get("base_model_name_or_path")
    origin = f" (its config says it was made for {trained_on!r})" if trained_on else ""
    local = Path(path).expanduser()
    if not local.is_dir() and (os.sep in path or path.startswith(".")):
        d.add(f"the base model folder {name} does not exist: pass a local folder holding config.json, or \"course\" "
              "for the course's model.")
        return
    if local.is_dir() and not (local / "config.json").is_file():
        d.add(f"the base model folder {name} holds no config.json: pass the folder the base model was saved to "
              "(save_pretrained writes config.json), or \"course\" for the course's model.")
        return
    try:
        base = _base_skeleton(path, config)
    except Exception as exc:
        d.add(f"cannot load the base model {base_model!r} ({one_line(exc)}): pass a local folder holding config.json, "
              "or \"course\" for the course's model.")
        return
    tm = config.get("target_modules")
    if isinstance(tm, list):
        absent = unmatched_targets(tm, base)
        if absent:
            d.add(f"target_modules {_short(absent)} match no module of the base model {name}: the adapter was made for "
                  f"another architecture{origin}; load it onto that model, or pass that model with --base.")
    missing = sorted(m for m in list(lora.modules) + list(lora.extra_modules) if m not in base)
    if missing:
        hint = _renamed_hint(missing[0], base)
        if hint:
            d.add(f"{len(missing)} module path(s) of the adapter match nothing in the base model {name} (e.g. "
                  f"{missing[0]!r}), so peft would warn 'Found missing adapter keys' and the adapter would do "
                  f"nothing{hint}.")
        else:
            d.add(f"{len(missing)} LoRA module(s) of the adapter are not in the base model {name} (e.g. "
                  f"{missing[0]!r}): the adapter was made for another model{origin}; load it onto that model.")
    _check_saved_modules(lora, base, name, config, d)
    misfit = []
    for module, ab in sorted(lora.modules.items()):
        if module not in base:
            continue
        dims = in_out_features(base[module])
        if dims is None:
            continue
        n_in, n_out = dims
        for part, (key, shape) in sorted(ab.items()):
            if len(shape) != 2:
                continue
            need, got, what = (n_in, shape[1], "inputs") if part == "A" else (n_out, shape[0], "outputs")
            if got != need:
                misfit.append((key, shape, module, need, what))
    if misfit:
        key, shape, module, need, what = misfit[0]
        d.add(f"{len(misfit)} LoRA tensor(s) do not fit the base model {name} (e.g. {key!r} has shape {list(shape)} "
              f"but the base's {module} has {need} {what}): the adapter was trained on a base of another size{origin}; "
              "load it onto that model.")


def _check_saved_modules(lora: LoraTensors, base: dict, name: str, config: dict, d: Diagnosis) -> None:
    """Saved embeddings and heads (modules_to_save, save_embedding_layers) must have the base's shapes."""
    vocab = next((_vocab_size(m) for m in base.values() if _vocab_size(m)), None)
    resized = []
    for module, params in sorted(lora.extra_modules.items()):
        weight = getattr(base.get(module), "weight", None)
        if "weight" not in params or weight is None:
            continue
        key, shape = params["weight"]
        want = tuple(int(n) for n in weight.shape)
        if shape == want:
            continue
        if len(shape) == 2 and shape[1:] == want[1:] and want[0] == vocab:
            resized.append((module, shape[0], key))
        else:
            d.add(f"adapter_model.safetensors saves {module} with shape {list(shape)} but the base model {name} has "
                  f"{list(want)} (e.g. {key!r}): the head or layer was built differently (e.g. another num_labels); "
                  "build the base the same way, e.g. from_pretrained(..., num_labels=...), then load the adapter.")
    if resized:
        module, rows, key = resized[0]
        d.add(f"adapter_model.safetensors saves {_short(m for m, _, _ in resized)} for a vocabulary of {rows} tokens "
              f"but the base model {name} has {vocab} (e.g. {key!r}): tokens were added in training; load the "
              "tokenizer saved with the adapter and resize the base first, base.resize_token_embeddings(len(tokenizer)), "
              "then load the adapter.")
    indices = config.get("trainable_token_indices")
    flat = indices if isinstance(indices, list) else [i for v in indices.values() if isinstance(v, list) for i in v] \
        if isinstance(indices, dict) else []
    top = max((i for i in flat if isinstance(i, int) and not isinstance(i, bool)), default=None)
    if vocab and top is not None and top >= vocab and not lora.extra_modules:
        d.add(f"trainable_token_indices goes up to token {top} but the base model {name} has {vocab} tokens: tokens "
              "were added in training; resize the base first, base.resize_token_embeddings(len(tokenizer)) with the "
              "tokenizer saved with the adapter, then load the adapter.")


def _summary(shown, config, header, files, subdirs, base_model, lora) -> str:
    lines = [f"{shown}: no problem found"]
    if config is not None:
        lines.append(f"  peft type:      {config.get('peft_type')}")
        if "r" in config:
            alpha = f" (lora_alpha {config['lora_alpha']})" if "lora_alpha" in config else ""
            lines.append(f"  rank:           r={config['r']}{alpha}")
        tm = config.get("target_modules")
        if tm is not None:
            lines.append(f"  target modules: {', '.join(sorted(tm)) if isinstance(tm, list) else tm}")
    if header is not None:
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        dtypes = sorted({v["dtype"] for v in tensors.values()})
        size = files[WEIGHTS_FILE].stat().st_size
        lines.append(f"  tensors:        {len(tensors)} in {WEIGHTS_FILE} ({size:,} bytes), dtype {', '.join(dtypes) or '-'}")
    if base_model is not None and lora:
        lines.append(f"  base model:     {_resolve_base(base_model)}: all {len(lora.modules)} adapted modules exist "
                     "and every tensor fits them")
    if subdirs:
        lines.append(f"  also:           {len(subdirs)} adapter(s) in subfolders ({', '.join(subdirs)})")
    return "\n".join(lines)
