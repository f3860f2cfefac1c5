"""The adapter lesson 1 saves, for the lessons after it: reuse the folder, or rebuild it the same way.

Defined in lesson 2 (``lesson1_adapter``); ``lesson1_model`` repeats lesson 1's seeded recipe in memory.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from .adapter_format import CONFIG_FILE, WEIGHTS_FILE, read_safetensors_header, split_lora_key, tensor_entries
from .assets import course_model
from .folders import staged_folder
from .models import load_base_model, load_tokenizer
from .training import train_demo_adapter

# Lesson 1's recipe. notebooks/01_save_adapter.ipynb spells the same values out (tests/test_artifacts.py checks).
LESSON1_LORA = dict(r=8, lora_alpha=16, target_modules=["c_attn"], task_type="CAUSAL_LM")
LESSON1_SEED = 0
LESSON1_STEPS = 10
LESSON1_FOLDER = "saved/01_adapter"
MESSAGE = "Adapter from lesson 1 (01_save_adapter.ipynb): {folder}"
REBUILT = ("{folder} was missing or incomplete (lesson 1 not run yet?): rebuilt it with lesson 1's recipe, "
           "the same seeded training, so it holds the same adapter.")


def lesson1_model(progress: bool = False):
    """Lesson 1's trained ``PeftModel``, rebuilt in memory: seed, wrap the base, train. Deterministic."""
    tokenizer = load_tokenizer()
    base = load_base_model()
    torch.manual_seed(LESSON1_SEED)  # lora_A starts random: seed it so the rebuild matches lesson 1
    model = get_peft_model(base, LoraConfig(**LESSON1_LORA))
    train_demo_adapter(model, tokenizer, steps=LESSON1_STEPS, seed=LESSON1_SEED, progress=progress)
    return model.eval()


def is_lesson1_adapter(folder: str | Path) -> bool:
    """True if ``folder`` holds a complete adapter saved with lesson 1's config on the course model."""
    folder = Path(folder)
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
        header = read_safetensors_header(folder / WEIGHTS_FILE)
    except (OSError, ValueError):
        return False
    wanted = {k: v for k, v in LESSON1_LORA.items() if k != "target_modules"}
    if any(config.get(k) != v for k, v in wanted.items()):
        return False
    if sorted(config.get("target_modules") or []) != sorted(LESSON1_LORA["target_modules"]):
        return False
    if config.get("base_model_name_or_path") != course_model():
        return False
    names = list(tensor_entries(header))
    return bool(names) and all(split_lora_key(k) for k in names)


def _rebuild(folder: Path, wait_s: float = 0.0) -> None:
    """Give a folder being written ``wait_s`` seconds to become complete; else rebuild it in one rename."""
    deadline = time.monotonic() + wait_s
    while folder.exists() and time.monotonic() < deadline:  # lesson 1 may be writing it right now
        if is_lesson1_adapter(folder):
            return  # a good copy appeared meanwhile: keep it
        time.sleep(0.2)
    model = lesson1_model()
    with staged_folder(folder, replace=True) as stage:
        model.save_pretrained(stage)


def lesson1_adapter(folder: str | Path = LESSON1_FOLDER, wait_s: float = 3.0) -> Path:
    """The folder lesson 1 saved, if it holds a valid adapter; else rebuild it exactly as lesson 1 does.

    The rebuild is written to a temporary folder and moved into place, so a reader never sees half a
    folder. A folder that exists but is incomplete gets ``wait_s`` seconds to be finished (lesson 1 may
    be writing it right now) before it is replaced. Prints where the adapter is, and says so when it
    had to rebuild it.
    """
    folder = Path(folder)
    deadline = time.monotonic() + (wait_s if folder.exists() else 0)
    while not is_lesson1_adapter(folder):
        if time.monotonic() >= deadline:
            _rebuild(folder, wait_s)
            print(REBUILT.format(folder=folder.as_posix()))
            break
        time.sleep(0.2)
    print(MESSAGE.format(folder=folder.as_posix()))
    return folder
