"""Running the course on a full-size GPT-2 architecture (``COURSE_MODEL=<folder>``).

``full_size_gpt2_folder()`` builds, once, a folder holding the 124M GPT-2 architecture (the random
weights of ``bench.gpt2_random``) next to the course tokenizer, cached outside the repository.
``adapter_for_model(name)`` stands in for a shipped adapter when ``course_model()`` is not the shipped
model: the shipped adapters only fit the tiny model, so adapters of the same names are trained briefly
for the course model and cached, keyed by that model. ``shipped_adapter`` (lesson 1) calls it.
Used by ``tests/test_course_model_full_size.py``; no lesson teaches it.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from .bench import cache_dir, gpt2_random
from .paths import SHIPPED_MODEL

FULL_SIZE_NAME = "gpt2-124m-course-tokenizer"
QUICK_ADAPTER_STEPS = 6
_announced: set[str] = set()


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # the weights are ~500 MB: share them with the bench folder when possible
    except OSError:
        shutil.copy2(src, dst)


def full_size_gpt2_folder(cache: Path | None = None) -> Path:
    """Folder with ``GPT2Config()`` (124M, random weights, seed 0) and the course tokenizer; built on first use."""
    from .models import load_tokenizer

    folder = (cache or cache_dir()) / FULL_SIZE_NAME
    if (folder / "model.safetensors").is_file() and (folder / "tokenizer_config.json").is_file():
        return folder
    weights = gpt2_random(cache)
    stage = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{FULL_SIZE_NAME}-"))
    for f in weights.iterdir():
        _link_or_copy(f, stage / f.name)
    load_tokenizer(str(SHIPPED_MODEL)).save_pretrained(stage)  # its ids are < 1024: they fit GPT-2's 50257
    shutil.rmtree(folder, ignore_errors=True)
    stage.rename(folder)  # complete or absent
    return folder


def is_shipped_model(model: str) -> bool:
    """True when ``model`` (a folder or a Hub id) is the shipped tiny model."""
    try:
        return Path(model).expanduser().resolve() == SHIPPED_MODEL.resolve()
    except OSError:
        return False


def _model_key(model: str) -> str:
    """Short key of a model: its resolved path (or Hub id) and, for a folder, its config and weights' size/mtime."""
    path = Path(model).expanduser()
    parts = [str(path.resolve()) if path.exists() else model]
    if path.is_dir():
        for f in sorted(path.glob("*.json")) + sorted(path.glob("*.safetensors")):
            st = f.stat()
            parts.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def adapter_for_model(name: str, model: str, cache: Path | None = None, steps: int | None = None) -> Path:
    """Adapter ``name`` trained for ``model`` for ``steps`` steps (same LoRA config as the shipped one), cached."""
    from .paths import ADAPTER_NAMES

    steps = QUICK_ADAPTER_STEPS if steps is None else steps

    if name not in ADAPTER_NAMES:
        raise ValueError(f"No shipped adapter named {name!r}: choose one of {', '.join(ADAPTER_NAMES)}.")
    root = (cache or cache_dir()) / "adapters-for-model" / _model_key(model)
    folder = root / name
    if model not in _announced:
        _announced.add(model)
        print(f"course_utils: COURSE_MODEL={model} is not the shipped model; the shipped adapters do not fit it, "
              f"so adapters of the same names trained for {steps} steps are used (cached in {root})", flush=True)
    if (folder / "adapter_model.safetensors").is_file():
        return folder
    from .build_assets import train_adapter
    from .models import load_base_model, load_tokenizer

    root.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}-"))
    try:
        train_adapter(load_base_model(model), load_tokenizer(model), name, stage, steps=steps)
        shutil.rmtree(folder, ignore_errors=True)
        stage.rename(folder)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return folder
