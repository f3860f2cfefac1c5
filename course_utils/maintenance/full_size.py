"""The full-size 124M GPT-2 architecture, built locally (no download): for ``make bench`` and ``COURSE_MODEL``.

``gpt2_random()`` saves ``GPT2Config()`` with seeded random weights once into the course cache;
``full_size_gpt2_folder()`` puts the course tokenizer beside those weights, so every lesson can run on a
full-size model offline (README, "Using the real GPT-2"). No lesson teaches it.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from ..assets import SHIPPED_MODEL, cache_dir
from ..folders import staged_folder
from ..models import load_tokenizer

GPT2_SEED = 0
FULL_SIZE_NAME = "gpt2-124m-course-tokenizer"


def gpt2_random(cache: Path | None = None) -> Path:
    """Folder of a 124M-parameter GPT-2 (``GPT2Config()`` defaults, seeded random weights); built on first use."""
    folder = (cache or cache_dir()) / "gpt2-random"
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    print(f"bench: building the random 124M GPT-2 once into {folder}", flush=True)
    torch.manual_seed(GPT2_SEED)
    model = GPT2LMHeadModel(GPT2Config()).eval()
    with staged_folder(folder, replace=True) as stage:
        model.save_pretrained(stage)
    return folder


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # the weights are ~500 MB: share them with the bench folder when possible
    except OSError:
        shutil.copy2(src, dst)


def full_size_gpt2_folder(cache: Path | None = None) -> Path:
    """Folder with ``GPT2Config()`` (124M, random weights, seed 0) and the course tokenizer; built on first use."""
    folder = (cache or cache_dir()) / FULL_SIZE_NAME
    if (folder / "model.safetensors").is_file() and (folder / "tokenizer_config.json").is_file():
        return folder
    weights = gpt2_random(cache)
    with staged_folder(folder, replace=True) as stage:
        for f in weights.iterdir():
            _link_or_copy(f, stage / f.name)
        load_tokenizer(str(SHIPPED_MODEL)).save_pretrained(stage)  # its ids are < 1024: they fit GPT-2's 50257
    return folder
