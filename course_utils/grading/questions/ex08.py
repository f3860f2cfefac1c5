"""Exercise 8 (lesson 8, version drift, adapter names and state dicts): given material and the judges of its questions.

Q1's renamed adapter is made from the learner's seed (which prefix the other transformers version put in the module
paths, which modules, which rank) with weights from ``secrets``; so is Q2's teammate model (its adapter's name and
rank seeded, its weights secret), saved as a whole ``state_dict``. The folders, snapshotted by ``record_given`` as
the given cells end, are the only copies of those weights.
"""
from __future__ import annotations

import random
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file, save_file

from ...adapter_format import WEIGHTS_FILE, is_lora_name
from ...learner import learner_seed
from ...models import load_base_model
from ..evidence import Evidence
from .common import (
    Question,
    Wrong,
    active,
    given_snapshot,
    holds_on_course_base,
    own_rng,
    peft_model,
    quiet_save,
    require,
    runs_as_remapped,
    same_logits,
    secret_rng,
)

PREFIXES = ("decoder.", "backbone.", "gpt2.", "language_model.", "core.")  # not the lesson's "model."
ADAPTER_NAMES = ("sentiment_v2", "reviews", "es_final", "prod", "run7")       # the teammate's adapter (Q2)
STATE_FILE = "model_state.pt"
SERVING = "serving"
Q1_WRONG = ("the LoRA B matrices of `repaired` are zero: no saved tensor reached its layer, so it computes the base "
            "model (lesson 8, 'Version drift').",
            "the active adapter of `repaired` does not hold the tensors saved in `theirs`: load it from that folder.")



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
                if is_lora_name(name, "B"):
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
    holds_on_course_base(model, "repaired", expected, Q1_WRONG)
    return "the saved weights are in use: " + runs_as_remapped(model, "repaired", path, prefix)

# ============================================================================ Q2: a state_dict under another name
def transplant_plan(seed: int) -> dict:
    """Exercise 8 Q2: the name and rank of the teammate's adapter, from the learner's seed."""
    rng = random.Random(seed * 7 + 2)
    return {"name": rng.choice(ADAPTER_NAMES), "r": rng.choice((4, 8, 16))}


def _plan_config(plan: dict) -> LoraConfig:
    return LoraConfig(r=plan["r"], lora_alpha=2 * plan["r"], target_modules=["c_attn"], fan_in_fan_out=True)


def teammate_state(target, learner=None) -> Path:
    """Exercise 8 Q2: a teammate's trained-looking PeftModel saved with ``torch.save(model.state_dict())`` into
    ``target``; its adapter's name and rank are seeded, its weights drawn from ``secrets``."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    plan = transplant_plan(learner_seed(learner))
    with secret_rng():
        model = get_peft_model(load_base_model(), _plan_config(plan), adapter_name=plan["name"])
        with torch.no_grad():
            for name, weight in model.named_parameters():
                if is_lora_name(name, "B"):
                    weight.normal_(0, 0.05)   # stands in for training
    torch.save(model.state_dict(), target / STATE_FILE)
    return target


def serving_model(learner=None):
    """Exercise 8 Q2, the given cell: the course's base model with a fresh adapter named ``serving``, of the
    teammate's config."""
    return get_peft_model(load_base_model(), _plan_config(transplant_plan(learner_seed(learner))),
                          adapter_name=SERVING)


def _teammate_weights(path: Path, name: str) -> dict:
    """The teammate's LoRA tensors under peft's names (no adapter name), from the snapshot of their file."""
    file = path / STATE_FILE
    require(file.is_file(), f"the folder `teammate` holds no {STATE_FILE}: run the notebook from its first cell.")
    state = torch.load(file, map_location="cpu", weights_only=True)
    lora = {k: v for k, v in state.items() if is_lora_name(k)} if isinstance(state, dict) else {}
    require(lora and all(f".{name}." in k for k in lora), "the folder `teammate` was made for another learner: run "
                                                          "the notebook from its first cell.")
    return {k.replace(f".{name}.", ".", 1): v for k, v in lora.items()}


def _q2(ev: Evidence) -> str:
    """Lesson 8, adapter names and state dicts: a teammate's adapter, saved inside a whole ``state_dict`` under its
    own adapter name, moved into a model whose adapter has another name (``serving``), which it keeps."""
    plan = transplant_plan(ev.seed)
    expected = _teammate_weights(given_snapshot(ev, "ex08_given_state", "teammate"), plan["name"])
    model = peft_model(ev, "serving")
    adapter = active(model, "serving")
    require(adapter == SERVING, f"the active adapter of `serving` is named '{adapter}': the serving code asks for "
                                f"'{SERVING}' (keep that name, load the weights into it).")
    wrong = (f"the LoRA B matrices of `serving` are zero: no tensor of the teammate's state_dict reached its layers; "
             f"their keys name the adapter '{plan['name']}' (lesson 8, 'Names and state dicts').",
             f"the adapter 'serving' does not hold the teammate's tensors from `teammate/{STATE_FILE}`: load them "
             "from that file.")
    holds_on_course_base(model, "serving", expected, wrong, within=f".{SERVING}.")
    reference = get_peft_model(load_base_model(), _plan_config(plan), adapter_name=SERVING)
    set_peft_model_state_dict(reference, expected, adapter_name=SERVING)
    return f"the teammate's '{plan['name']}' weights run as '{SERVING}': " + same_logits(reference.eval(), model,
                                                                                           "`serving`")


QUESTIONS = (
    Question("ex08_q1", 2, ("repaired",), own_rng(_q1)),
    Question("ex08_q2", 2, ("serving",), own_rng(_q2)),
)
