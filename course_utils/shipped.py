"""The two adapters the course ships, or stand-ins of the same names when the course runs on another model.

Defined in lesson 1 (``shipped_adapter``); lesson 5 loads both; lesson 2, section 4 shows why the copy below exists.
The tracked folders record a placeholder base, ``course-tiny-gpt2``, because the shipped model's folder differs
on every machine. peft's ``save_pretrained`` looks for that base's ``config.json`` (to see whether the vocabulary
was resized); offline it cannot, and warns "Could not find a config file in course-tiny-gpt2". So
``shipped_adapter`` returns a per-machine copy (``local_copy``) in the course cache whose ``adapter_config.json``
names this machine's ``course_model()`` folder: saves are silent, and ``AutoModelForCausalLM.from_pretrained``
finds the base. The tracked files are never changed. With ``$COURSE_MODEL`` naming another model
(README, "Using the real GPT-2") the shipped adapters do not fit it, so ``standin_adapter`` trains adapters
of the same names and configuration for a few steps and caches them, keyed by that model.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from .adapter_format import CONFIG_FILE, WEIGHTS_FILE
from .assets import (
    ADAPTER_NAMES,
    SHIPPED_ADAPTERS,
    SHIPPED_LORA,
    cache_dir,
    course_model,
    is_shipped_model,
)
from .folders import staged_folder
from .models import load_base_model, load_tokenizer
from .training import train_demo_adapter

STANDIN_STEPS = 6
LOCAL_COPIES = "shipped-adapters"  # under cache_dir(): the per-machine copies of the shipped adapters
_announced: set[str] = set()


def _check_name(name: str) -> None:
    if name not in ADAPTER_NAMES:
        raise ValueError(f"No shipped adapter named {name!r}: choose one of {', '.join(ADAPTER_NAMES)}.")


def shipped_adapter(name: str) -> Path:
    """Folder of a shipped adapter (``spanish_sentiment`` or ``english_ner``) that fits ``course_model()``."""
    _check_name(name)
    model = course_model()
    if not is_shipped_model(model):
        return standin_adapter(name, model)
    path = SHIPPED_ADAPTERS / name
    if not (path / CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"The shipped adapter {name!r} is missing at {path}: run `python -m course_utils build-assets`."
        )
    return local_copy(path, model)


def local_copy(source: Path, base: str, cache: Path | None = None) -> Path:
    """``source`` copied once into the course cache, its ``base_model_name_or_path`` set to ``base`` (a folder here).

    The copy's folder is keyed by its config and the source's file sizes and times, so a rebuilt asset or another
    checkout gets its own copy; it is written in one rename (``staged_folder``) and then only read.
    """
    config = json.loads((source / CONFIG_FILE).read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = str(Path(base).expanduser().resolve())
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    files = sorted(f for f in source.iterdir() if f.is_file() and f.name != CONFIG_FILE)
    stamp = "\n".join([text] + [f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files])
    root = (cache or cache_dir()) / LOCAL_COPIES
    folder = root / hashlib.sha256(stamp.encode()).hexdigest()[:16] / source.name
    if _is_copy(folder, text, files):
        return folder
    try:
        with staged_folder(folder, replace=folder.exists()) as stage:
            for f in files:
                shutil.copyfile(f, stage / f.name)
            (stage / CONFIG_FILE).write_text(text, encoding="utf-8")
    except OSError as exc:
        if not _is_copy(folder, text, files):  # else another process wrote the same copy first
            raise OSError(f"cannot write this machine's copy of the shipped adapter {source.name!r} under {root} "
                          f"({type(exc).__name__}): set PEFT_COURSE_CACHE to a folder you can write to.") from None
    return folder


def _is_copy(folder: Path, text: str, files: list[Path]) -> bool:
    """True when ``folder`` holds the config ``text`` and every file of ``files`` at its size."""
    try:
        return (folder / CONFIG_FILE).read_text(encoding="utf-8") == text and all(
            (folder / f.name).stat().st_size == f.stat().st_size for f in files)
    except OSError:
        return False


def model_key(model: str) -> str:
    """Short key of a model: its resolved path (or Hub id) and, for a folder, its files' sizes and times."""
    path = Path(model).expanduser()
    parts = [str(path.resolve()) if path.exists() else model]
    if path.is_dir():
        for f in sorted(path.glob("*.json")) + sorted(path.glob("*.safetensors")):
            st = f.stat()
            parts.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def standin_adapter(name: str, model: str, cache: Path | None = None, steps: int | None = None) -> Path:
    """Adapter ``name`` for ``model``: the shipped LoRA config trained ``steps`` steps on its task, cached."""
    _check_name(name)
    steps = STANDIN_STEPS if steps is None else steps
    root = (cache or cache_dir()) / "adapters-for-model" / model_key(model)
    folder = root / name
    if model not in _announced:
        _announced.add(model)
        print(f"course_utils: COURSE_MODEL={model} is not the shipped model; the shipped adapters do not fit it, "
              f"so adapters of the same names trained for {steps} steps are used (cached in {root})", flush=True)
    if (folder / WEIGHTS_FILE).is_file():
        return folder
    tokenizer = load_tokenizer(model)
    torch.manual_seed(1)
    peft_model = get_peft_model(load_base_model(model), LoraConfig(task_type="CAUSAL_LM", **SHIPPED_LORA))
    train_demo_adapter(peft_model, tokenizer, steps=steps, seed=1, task=name, progress=False)
    with staged_folder(folder, replace=True) as stage:
        peft_model.save_pretrained(stage)
    return folder
