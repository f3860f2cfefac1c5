"""The material the exercises give the learner, built from fixed seeds so that the checker can build it again.

A given cell calls these in the learner's kernel; the trusted checker calls them in its own process for its
reference models (``reference`` caches one copy per process). Used by ``ex02.py``-``ex04.py``.
"""
from __future__ import annotations

import tempfile
from functools import lru_cache

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from ...models import load_base_model


def colleague(seed: int = 0, adapter_name: str = "default", targets=("c_attn",)) -> PeftModel:
    """A LoRA adapter (rank 8) with non-zero weights, as if trained: the same ``seed`` gives the same weights."""
    torch.manual_seed(seed)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=list(targets), init_lora_weights=False)
    return get_peft_model(load_base_model(), config, adapter_name=adapter_name)


@lru_cache(maxsize=8)
def reference(seed: int = 0, adapter_name: str = "default", targets=("c_attn",)) -> PeftModel:
    """The checker's own copy of ``colleague(...)`` (never handed to a learner, never changed)."""
    return colleague(seed, adapter_name, tuple(targets)).eval()


def saved_and_reloaded(count: int, seed: int = 0, targets=("c_attn",)) -> tuple[PeftModel, list[PeftModel]]:
    """The colleague's adapter and ``count`` fresh reloads of it from a temporary folder (probes of function
    answers call these in the learner's kernel, so the inputs are the course's, not the notebook's objects)."""
    saved = colleague(seed, "default", targets)
    with tempfile.TemporaryDirectory() as tmp:
        saved.save_pretrained(tmp)
        return saved, [PeftModel.from_pretrained(load_base_model(), tmp) for _ in range(count)]


def given_adapter(target, targets=("c_attn",), adapter_name: str = "default", seed: int = 0) -> PeftModel:
    """Exercises 2-4: a trained-looking adapter (rank 8 on ``targets``) saved into ``target``; returns the model."""
    model = colleague(seed, adapter_name, targets)
    model.save_pretrained(str(target))
    return model
