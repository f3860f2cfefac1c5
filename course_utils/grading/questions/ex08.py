"""Exercise 8 (lesson 8, version drift, adapter names and state dicts): given material and the judge of its question.

The renamed adapter is made from the learner's seed (which prefix the other transformers version put in the module
paths, which modules, which rank) with weights from ``secrets``: the folder, snapshotted by ``record_given`` as the
given cell ends, is their only copy.
"""
from __future__ import annotations

import random
import re
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file

from ...adapter_format import WEIGHTS_FILE
from ...learner import learner_seed
from ...models import load_base_model
from ...roundtrip import compare_logits
from ..evidence import Evidence
from .common import (
    Question,
    Wrong,
    active,
    given_snapshot,
    holds,
    own_rng,
    peft_model,
    quiet_save,
    require,
    same_logits,
    secret_rng,
    tokenizer,
)

PREFIXES = ("decoder.", "backbone.", "gpt2.", "language_model.", "core.")  # not the lesson's "model."



def renamed_plan(seed: int) -> dict:
    """Exercise 8 Q1: what the colleague's version did (the prefix in the module paths) and their adapter's
    shape (rank, target modules), from the learner's seed."""
    rng = random.Random(seed * 7 + 1)
    return {"prefix": rng.choice(PREFIXES), "r": rng.choice((4, 8, 16)),
            "targets": ["c_attn", *rng.choice((["c_fc"], ["c_proj"], ["c_fc", "c_proj"]))]}


def renamed_colleague(target, learner=None) -> Path:
    """Exercise 8 Q1: a colleague's trained-looking adapter saved into ``target`` by a transformers version whose
    module paths carry a prefix (seeded, as its shape); its weights are drawn from ``secrets``."""
    target = Path(target)
    plan = renamed_plan(learner_seed(learner))
    with secret_rng():
        model = get_peft_model(load_base_model(), LoraConfig(r=plan["r"], lora_alpha=2 * plan["r"],
                                                             target_modules=plan["targets"], fan_in_fan_out=True))
        with torch.no_grad():
            for name, weight in model.named_parameters():
                if "lora_B" in name:
                    weight.normal_(0, 0.05)   # stands in for training
    quiet_save(model, target)
    weights = load_file(str(target / WEIGHTS_FILE))
    save_file({k.replace("base_model.model.", f"base_model.model.{plan['prefix']}", 1): v for k, v in weights.items()},
              str(target / WEIGHTS_FILE), metadata={"format": "pt"})   # their layout
    return target


def _saved_weights(path: Path, prefix: str) -> dict:
    """The folder's tensors under the names this version expects; fails when the folder has another layout."""
    files = sorted(p.name for p in path.iterdir())
    require(WEIGHTS_FILE in files, f"the folder `theirs` holds no {WEIGHTS_FILE}: run the notebook from its "
                                   "first cell.")
    weights = load_file(str(path / WEIGHTS_FILE))
    theirs = f"base_model.model.{prefix}transformer."
    require(weights and all(k.startswith(theirs) for k in weights), "the folder `theirs` was made for another "
                                                                    "learner: run the notebook from its first cell.")
    return {k.replace(f"base_model.model.{prefix}", "base_model.model.", 1): v for k, v in weights.items()}


def _peft_answer(ev: Evidence, name: str):
    """The PeftModel answer ``name``; one around a model other than the course's fails saying so."""
    info = ev.model_info(name)
    if str(info.get("class")).startswith("PeftModel") and info.get("base_class") is None:
        first = next(iter(info.get("params") or {}), "")
        where = first.split(".transformer.", 1)[0] if ".transformer." in first else first.rsplit(".", 1)[0]
        raise Wrong(f"`{name}` is a PeftModel around a model that is not the course's base model (its layers sit "
                    f"under `{where}`): the check rebuilds the course's model only, so load the adapter onto it.")
    return peft_model(ev, name)


def _q1(ev: Evidence) -> str:
    """Lesson 8, version drift: an adapter saved with renamed module paths, loaded from its folder so that its weights
    are really used (the folder holds the only copy of them)."""
    path = given_snapshot(ev, "ex08_given_renamed", "theirs")
    prefix = renamed_plan(ev.seed)["prefix"]
    expected = _saved_weights(path, prefix)
    model = _peft_answer(ev, "repaired")
    adapter = active(model, "repaired")
    if not holds(model, adapter, expected):
        untouched = all(not p.any() for n, p in model.named_parameters() if "lora_B" in n)
        raise Wrong("the LoRA B matrices of `repaired` are zero: no saved tensor reached its layer, so it computes "
                    "the base model (lesson 8, 'Version drift')." if untouched else
                    "the active adapter of `repaired` does not hold the tensors saved in `theirs`: load it from "
                    "that folder.")
    with model.disable_adapter():
        base_gap = compare_logits(model, load_base_model(), tokenizer()).max_abs_diff
    require(base_gap == 0.0, "`repaired`'s base model is not the course's base model.")
    reference = PeftModel.from_pretrained(load_base_model(), str(path),
                                          key_mapping={rf"^{re.escape(prefix)}": ""}).eval()
    return "the saved weights are in use: " + same_logits(reference, model, "`repaired`")

QUESTIONS = (
    Question("ex08_q1", 2, ("repaired",), own_rng(_q1)),
)
