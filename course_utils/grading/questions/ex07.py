"""Exercise 7 (lesson 7, versions, names, combining): given material and the judges of its questions.

The renamed adapter of Q1 is made from the learner's seed (which prefix the other transformers version put in
the module paths, which modules, which rank) with weights from ``secrets``: the folder, snapshotted by
``record_given`` as the given cell ends, is their only copy. Q3's mix of the two shipped adapters is seeded too.
"""
from __future__ import annotations

import random
import re
from functools import lru_cache
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file

from ...adapter_format import WEIGHTS_FILE
from ...learner import learner_seed
from ...models import load_base_model
from ...roundtrip import compare_logits, logits_of, sample_batch
from ...shipped import shipped_adapter
from ..evidence import Evidence, type_name
from .common import Question, Wrong, active, adapter_folder, folder, holds, peft_model, require, same_logits, tokenizer
from .ex06 import given_snapshot, own_rng, quiet_save, secret_rng

# Two adapters concatenated (cat) compute their weighted sum; float32 sums in another order stay this close.
COMBINED_ATOL = 1e-4
PREFIXES = ("decoder.", "backbone.", "gpt2.", "language_model.", "core.")  # not the lesson's "model."
MIX_WEIGHTS = (0.5, 0.75, 1.25, 1.5, 2.0)


def renamed_plan(seed: int) -> dict:
    """Exercise 7 Q1: what the colleague's version did (the prefix in the module paths) and their adapter's
    shape (rank, target modules), from the learner's seed."""
    rng = random.Random(seed * 7 + 1)
    return {"prefix": rng.choice(PREFIXES), "r": rng.choice((4, 8, 16)),
            "targets": ["c_attn", *rng.choice((["c_fc"], ["c_proj"], ["c_fc", "c_proj"]))]}


def renamed_colleague(target, learner=None) -> Path:
    """Exercise 7 Q1: a colleague's trained-looking adapter saved into ``target`` by a transformers version whose
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
    """Lesson 7, section 1: an adapter saved with renamed module paths, loaded from its folder so that its weights
    are really used (the folder holds the only copy of them)."""
    path = given_snapshot(ev, "ex07_given_renamed", "theirs")
    prefix = renamed_plan(ev.seed)["prefix"]
    expected = _saved_weights(path, prefix)
    model = _peft_answer(ev, "repaired")
    adapter = active(model, "repaired")
    if not holds(model, adapter, expected):
        untouched = all(not p.any() for n, p in model.named_parameters() if "lora_B" in n)
        raise Wrong("the LoRA B matrices of `repaired` are zero: no saved tensor reached its layer, so it computes "
                    "the base model (lesson 7, section 1)." if untouched else
                    "the active adapter of `repaired` does not hold the tensors saved in `theirs`: load it from "
                    "that folder.")
    with model.disable_adapter():
        base_gap = compare_logits(model, load_base_model(), tokenizer()).max_abs_diff
    require(base_gap == 0.0, "`repaired`'s base model is not the course's base model.")
    reference = PeftModel.from_pretrained(load_base_model(), str(path),
                                          key_mapping={rf"^{re.escape(prefix)}": ""}).eval()
    return "the saved weights are in use: " + same_logits(reference, model, "`repaired`")


def mark_base(model) -> list[float]:
    """Exercise 7 Q2, the given cell: a random mark (from ``secrets``) added to the position embedding of the base
    model under ``model`` at its last position, which the course's short inputs never reach, so it changes no
    output; a base loaded again lacks it. Returns the marked row (the grader records it with ``record_given``)."""
    wpe = (model.get_base_model() if isinstance(model, PeftModel) else model).transformer.wpe.weight
    with secret_rng(), torch.no_grad():
        wpe[-1] += 1e-3 * torch.randn_like(wpe[-1])
    return wpe[-1].tolist()


def _given_mark(ev: Evidence) -> torch.Tensor:
    snap = ev.earlier("ex07_given_base")
    mark = snap.value("mark") if snap is not None and snap.has("mark") else None
    require(isinstance(mark, list) and mark, "the given cell `ex07_given_base` did not run in this notebook: run the "
                                             "notebook from its first cell.")
    return torch.tensor(mark, dtype=torch.float32)


def _no_lora_left(ev: Evidence) -> None:
    info = ev.model_info("clean_base")
    kind = str(info.get("class"))
    require(not kind.startswith("PeftModel"), "`clean_base` is still a PeftModel: get the model underneath.")
    require(kind != "LoraModel", "`clean_base` is a LoraModel, peft's wrapper around the layers, not the "
                                 "transformers base model underneath it (lesson 7, section 3).")
    lora = ev.lora_modules("clean_base")
    if lora:
        empty = not any("lora_" in name for name in info.get("params") or {})
        raise Wrong(f"`clean_base` still has {len(lora)} LoRA layers (e.g. {lora[0]})" + (
            ", emptied of their adapter but still wrapping the base's layers: the task asks for the plain base "
            "model, without LoRA wrappers." if empty else ": they change what it computes."))


def _q2(ev: Evidence) -> str:
    """Lesson 7, section 3: the base model underneath ``sentiment`` (the one its given cell marked), given back
    without its LoRA layers."""
    _no_lora_left(ev)
    mark = _given_mark(ev)
    clean_base = ev.value("clean_base")
    require(isinstance(clean_base, torch.nn.Module), f"`clean_base` should be a model, not a {type_name(clean_base)}.")
    row = clean_base.state_dict().get("transformer.wpe.weight")
    marked = row is not None and row.shape[-1] == mark.shape[0] and torch.equal(row[-1].float(), mark)
    if not ev.inside("clean_base", "sentiment"):
        raise Wrong("`clean_base` is a copy of the model underneath `sentiment`, not that model itself: obtain it "
                    "from `sentiment` (lesson 7, section 3)." if marked else "`clean_base` is not the model "
                    "underneath `sentiment`: obtain it from `sentiment`, not by loading again.")
    require(marked, "`clean_base` is not the base model that the given cell's `sentiment` wraps: a base loaded "
                    "again took its place (or `sentiment` was made again); obtain the one it was given.")
    result = compare_logits(load_base_model(), clean_base, tokenizer())
    require(result.ok, f"`clean_base` computes something else than the base model (max |difference| "
                       f"{result.max_abs_diff:.1e}): the adapter was merged in, not removed.")
    return f"no LoRA layers left, same logits as the base model (max |difference| {result.max_abs_diff:.1e})"


def mix_weights(seed: int) -> tuple[float, float]:
    """Exercise 7 Q3: how much of ``spanish_sentiment`` and of ``english_ner`` the learner's adapter carries."""
    return tuple(random.Random(seed * 7 + 3).sample(MIX_WEIGHTS, 2))


def combo_task(learner=None) -> tuple[float, float]:
    """Exercise 7 Q3, the given cell: ``(w_es, w_ner)`` for this learner."""
    return mix_weights(learner_seed(learner))


@lru_cache(maxsize=4)
def _mixed_logits(w_es: float, w_ner: float):
    """Both shipped adapters active at once, each update scaled by its weight: the checker's own reference."""
    both = PeftModel.from_pretrained(load_base_model(), shipped_adapter("spanish_sentiment"), adapter_name="es")
    both.load_adapter(shipped_adapter("english_ner"), adapter_name="ner")
    with torch.no_grad():
        for name, p in both.named_parameters():
            if "lora_B" in name:
                p.mul_(w_es if ".es." in name else w_ner)
    both.base_model.set_adapter(["es", "ner"])
    return logits_of(both, sample_batch(tokenizer()))


def _q3(ev: Evidence) -> str:
    """Lesson 7, section 3: one saved adapter that computes the learner's mix of both shipped adapters at once,
    reloadable from its folder."""
    w_es, w_ner = mix_weights(ev.seed)
    path = folder(ev, "combo_folder")
    adapter_folder(path)
    reloaded = PeftModel.from_pretrained(load_base_model(), str(path))
    gap = float((_mixed_logits(w_es, w_ner) - logits_of(reloaded, sample_batch(tokenizer()))).abs().max())
    require(gap <= COMBINED_ATOL, f"the reloaded adapter does not compute {w_es:g} × spanish_sentiment + {w_ner:g} × "
                                  f"english_ner (max |logit difference| {gap:.1e} from both active with those "
                                  f"weights, allowed {COMBINED_ATOL:g}).")
    return f"reloads from {path.name}/ and computes {w_es:g} × es + {w_ner:g} × ner (within {COMBINED_ATOL:g})"


QUESTIONS = (
    Question("ex07_q1", 2, ("repaired",), own_rng(_q1)),
    Question("ex07_q2", 2, ("clean_base",), _q2, ("sentiment",)),
    Question("ex07_q3", 2, ("combo_folder",), _q3),
)
