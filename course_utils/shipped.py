"""The two adapters the course ships, or stand-ins of the same names when the course runs on another model.

Defined in lesson 1 (``shipped_adapter``); lesson 5 loads both. With ``$COURSE_MODEL`` naming another model
(README, "Using the real GPT-2") the shipped adapters do not fit it, so ``standin_adapter`` trains adapters
of the same names and configuration for a few steps and caches them, keyed by that model.
"""
from __future__ import annotations

import hashlib
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
    return path


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
