"""``diagnose``'s checks against a base model (``diagnose(path, base_model=...)``, ``--base MODEL``): do the
adapter's target modules exist there, do its module paths, and do its tensors fit the base's layers, embeddings
and heads?

The base model is built on the ``meta`` device from its ``config.json`` (no weights read), through transformers.
Each check adds findings to a ``Diagnosis`` (see ``diagnosis_report``). Defined in lessons 3 and 6 to 9.
"""
from __future__ import annotations

import os
from pathlib import Path

from . import diagnosis_report as read
from .adapter_format import in_out_features, unmatched_targets
from .assets import course_model
from .diagnosis_files import LoraTensors, short
from .messages import one_line

BASE_ARGUMENT = "diagnose takes a local folder holding config.json as the base, or \"course\" for the course's model"


def resolve_base(name: str) -> str:
    """The folder or model id ``name`` stands for (``course`` is the course's model)."""
    return course_model() if name.strip().lower() in ("course", "shipped", "") else name


def _base_skeleton(name: str, config: dict) -> dict:
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


def _load_base(base_model: str, config: dict, d) -> dict | None:
    """The base's modules by path, or None (and a finding) when it cannot be built."""
    path = resolve_base(base_model)
    name = base_model if base_model.strip() else "course"  # as the user wrote it: no machine-specific path
    local = Path(path).expanduser()
    if not local.is_dir() and (os.sep in path or path.startswith(".")):
        d.add(f"the base model folder {name} does not exist: {BASE_ARGUMENT}", read.BASE_MODEL)
        return None
    if local.is_dir() and not (local / "config.json").is_file():
        d.add(f"the base model folder {name} holds no config.json, so it is not a saved model: {BASE_ARGUMENT}",
              read.BASE_MODEL)
        return None
    try:
        return _base_skeleton(path, config)
    except Exception as exc:
        d.add(f"cannot load the base model {base_model!r} ({one_line(exc)}): {BASE_ARGUMENT}", read.BASE_MODEL)
        return None


def _origin(trained_on) -> str:
    """`` (its config says it was made for X)``, X being "the course's model" for this machine's course model folder
    (no machine-specific path in the line), else the name as recorded; ``""`` when none is recorded."""
    if not trained_on or not isinstance(trained_on, str):
        return ""
    try:
        ours = Path(trained_on).expanduser().resolve() == Path(course_model()).expanduser().resolve()
    except (OSError, ValueError):
        ours = False
    label = "the course's model" if ours else repr(trained_on)
    return f" (its config says it was made for {label})"


def _renamed(missing: str, base: dict) -> str:
    """How the adapter's module path differs from the base's, when only a prefix differs; else ``""``."""
    parts = missing.split(".")
    for k in range(1, len(parts)):
        if ".".join(parts[k:]) in base:
            prefix = ".".join(parts[:k]) + "."
            return (f"only a prefix differs ({missing!r} here, {missing[len(prefix):]!r} in the base: the adapter's "
                    f"paths have an extra prefix {prefix!r})")
    longer = sorted(b for b in base if b.endswith("." + missing))
    if not longer:
        return ""
    prefix = longer[0][: -len(missing)]
    return f"only a prefix differs ({missing!r} here, {longer[0]!r} in the base: the adapter's paths lack the prefix {prefix!r})"


def _vocab_size(module) -> int | None:
    return int(module.weight.shape[0]) if type(module).__name__ == "Embedding" else None


def check_base(config: dict, lora: LoraTensors, base_model: str, d) -> None:
    """Findings where the adapter does not fit the base model ``base_model`` (a folder, a cached id, ``course``)."""
    base = _load_base(base_model, config, d)
    if base is None:
        return
    name = base_model if base_model.strip() else "course"
    origin = _origin(config.get("base_model_name_or_path"))
    tm = config.get("target_modules")
    absent = unmatched_targets(tm, base) if isinstance(tm, list) else []
    if absent:
        d.add(f"target_modules {short(absent)} match no module of the base model {name}: the adapter was made for "
              f"another architecture{origin}", read.TARGETS)
    missing = sorted(m for m in list(lora.modules) + list(lora.extra_modules) if m not in base)
    renamed = _renamed(missing[0], base) if missing else ""
    if renamed:
        d.add(f"{len(missing)} module path(s) of the adapter match nothing in the base model {name} (e.g. "
              f"{missing[0]!r}), so peft would warn 'Found missing adapter keys' and the adapter would do nothing; "
              f"{renamed}: the module paths were renamed, e.g. by a transformers refactor{origin}", read.RENAMED)
    elif missing:
        d.add(f"{len(missing)} LoRA module(s) of the adapter are not in the base model {name} (e.g. "
              f"{missing[0]!r}): the adapter was made for another model{origin}", read.OTHER_BASE)
    _check_saved_modules(lora, base, name, config, d)
    _check_lora_fit(lora, base, name, origin, d)


def _check_lora_fit(lora: LoraTensors, base: dict, name: str, origin: str, d) -> None:
    misfit = []
    for module, ab in sorted(lora.modules.items()):
        dims = in_out_features(base[module]) if module in base else None
        if dims is None:
            continue
        for part, (key, shape) in sorted(ab.items()):
            if len(shape) != 2:
                continue  # reported as not 2-D already
            need, got, what = (dims[0], shape[1], "inputs") if part == "A" else (dims[1], shape[0], "outputs")
            if got != need:
                misfit.append((key, shape, module, need, what))
    if misfit:
        key, shape, module, need, what = misfit[0]
        d.add(f"{len(misfit)} LoRA tensor(s) do not fit the base model {name} (e.g. {key!r} has shape {list(shape)} "
              f"but the base's {module} has {need} {what}): the adapter was trained on a base of another "
              f"size{origin}", read.OTHER_BASE)


def _top_token(indices) -> int | None:
    """The largest token id in a ``trainable_token_indices`` setting (a list, or lists by layer name)."""
    flat = indices if isinstance(indices, list) else [
        i for v in indices.values() if isinstance(v, list) for i in v] if isinstance(indices, dict) else []
    return max((i for i in flat if isinstance(i, int) and not isinstance(i, bool)), default=None)


def _check_saved_modules(lora: LoraTensors, base: dict, name: str, config: dict, d) -> None:
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
                  f"{list(want)} (e.g. {key!r}): the head or layer was built differently, e.g. for another number "
                  "of labels", read.HEADS)
    if resized:
        module, rows, key = resized[0]
        d.add(f"adapter_model.safetensors saves {short(m for m, _, _ in resized)} for a vocabulary of {rows} tokens "
              f"but the base model {name} has {vocab} (e.g. {key!r}): tokens were added in training, and a base of "
              "the published size has no rows for them ('size mismatch' on load)", read.NEW_TOKENS)
    top = _top_token(config.get("trainable_token_indices"))
    if vocab and top is not None and top >= vocab and not lora.extra_modules:
        d.add(f"trainable_token_indices goes up to token {top} but the base model {name} has {vocab} tokens: tokens "
              "were added in training, and a base of the published size has no rows for them", read.TRAINABLE_TOKENS)
