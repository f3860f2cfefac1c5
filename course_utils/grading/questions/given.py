"""The material the exercises give the learner, built from fixed seeds so that the checker can build it again.

A given cell calls these in the learner's kernel; the trusted checker calls them in its own process for its
reference models (``reference`` caches one copy per process). Used by ``ex02.py``-``ex04.py``.
"""
from __future__ import annotations

import json
import math
import tempfile
from functools import lru_cache
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from ...adapter_format import CONFIG_FILE, WEIGHTS_FILE
from ...files import tensor_table
from ...models import load_base_model

# The seed of the colleague's adapter that exercise 3 Q4 repairs.
RANK_SEED = 3


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


def broken_rank_folder(target) -> Path:
    """Exercise 3: a colleague's adapter folder whose config was edited by hand: its rank no longer fits the weights."""
    target = Path(target)
    given_adapter(target, seed=RANK_SEED)
    config_path = target / CONFIG_FILE
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["r"] = config["r"] // 2
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return target


def memory_budget(folder) -> int:
    """Exercise 4: bytes that hold the course model in a 16-bit dtype with the float32 adapter in ``folder``, but
    not in float32."""
    n_lora = sum(math.prod(shape) for _, _, shape in tensor_table(Path(folder) / WEIGHTS_FILE))
    return budget_for(n_lora)


def budget_for(n_lora: int) -> int:
    """The budget of ``memory_budget`` for an adapter of ``n_lora`` numbers (the checker counts its own)."""
    n_base = sum(p.numel() for p in load_base_model().parameters())
    fits = 2 * n_base + 4 * n_lora
    return (fits + 4 * (n_base + n_lora)) // 2
