"""Exercise 9 (lesson 9, combining adapters, hot-swapping, dtypes and empty saves): given material and judges.

Q1's given cell marks the base model it wraps with a mark drawn from ``secrets``; Q2's mix of the two shipped adapters
is seeded by the learner.
"""
from __future__ import annotations

import random
from functools import lru_cache

import torch
from peft import PeftModel

from ...learner import learner_seed
from ...models import load_base_model
from ...roundtrip import compare_logits, logits_of, sample_batch
from ...shipped import shipped_adapter
from ..evidence import Evidence, type_name
from .common import (
    Question,
    Wrong,
    adapter_folder,
    folder,
    require,
    secret_rng,
    tokenizer,
)

# Two adapters concatenated (cat) compute their weighted sum; float32 sums in another order stay this close.
COMBINED_ATOL = 1e-4
MIX_WEIGHTS = (0.5, 0.75, 1.25, 1.5, 2.0)



def mark_base(model) -> list[float]:
    """Exercise 9 Q1, the given cell: a random mark (from ``secrets``) added to the position embedding of the base
    model under ``model`` at its last position, which the course's short inputs never reach, so it changes no
    output; a base loaded again lacks it. Returns the marked row (the grader records it with ``record_given``)."""
    wpe = (model.get_base_model() if isinstance(model, PeftModel) else model).transformer.wpe.weight
    with secret_rng(), torch.no_grad():
        wpe[-1] += 1e-3 * torch.randn_like(wpe[-1])
    return wpe[-1].tolist()


def _given_mark(ev: Evidence) -> torch.Tensor:
    snap = ev.earlier("ex09_given_base")
    mark = snap.value("mark") if snap is not None and snap.has("mark") else None
    require(isinstance(mark, list) and mark, "the given cell `ex09_given_base` did not run in this notebook: run the "
                                             "notebook from its first cell.")
    return torch.tensor(mark, dtype=torch.float32)


def _no_lora_left(ev: Evidence) -> None:
    info = ev.model_info("clean_base")
    kind = str(info.get("class"))
    require(not kind.startswith("PeftModel"), "`clean_base` is still a PeftModel: get the model underneath.")
    require(kind != "LoraModel", "`clean_base` is a LoraModel, peft's wrapper around the layers, not the "
                                 "transformers base model underneath it (lesson 9, 'Combining adapters').")
    lora = ev.lora_modules("clean_base")
    if lora:
        empty = not any("lora_" in name for name in info.get("params") or {})
        raise Wrong(f"`clean_base` still has {len(lora)} LoRA layers (e.g. {lora[0]})" + (
            ", emptied of their adapter but still wrapping the base's layers: the task asks for the plain base "
            "model, without LoRA wrappers." if empty else ": they change what it computes."))


def _q1(ev: Evidence) -> str:
    """Lesson 9, combining adapters: the base model underneath ``sentiment`` (the one its given cell marked), given back
    without its LoRA layers."""
    _no_lora_left(ev)
    mark = _given_mark(ev)
    clean_base = ev.value("clean_base")
    require(isinstance(clean_base, torch.nn.Module), f"`clean_base` should be a model, not a {type_name(clean_base)}.")
    row = clean_base.state_dict().get("transformer.wpe.weight")
    marked = row is not None and row.shape[-1] == mark.shape[0] and torch.equal(row[-1].float(), mark)
    if not ev.inside("clean_base", "sentiment"):
        raise Wrong("`clean_base` is a copy of the model underneath `sentiment`, not that model itself: obtain it "
                    "from `sentiment` (lesson 9, 'Combining adapters')." if marked else "`clean_base` is not the model "
                    "underneath `sentiment`: obtain it from `sentiment`, not by loading again.")
    require(marked, "`clean_base` is not the base model that the given cell's `sentiment` wraps: a base loaded "
                    "again took its place (or `sentiment` was made again); obtain the one it was given.")
    result = compare_logits(load_base_model(), clean_base, tokenizer())
    require(result.ok, f"`clean_base` computes something else than the base model (max |difference| "
                       f"{result.max_abs_diff:.1e}): the adapter was merged in, not removed.")
    return f"no LoRA layers left, same logits as the base model (max |difference| {result.max_abs_diff:.1e})"


def mix_weights(seed: int) -> tuple[float, float]:
    """Exercise 9 Q2: how much of ``spanish_sentiment`` and of ``english_ner`` the learner's adapter carries."""
    return tuple(random.Random(seed * 7 + 3).sample(MIX_WEIGHTS, 2))


def combo_task(learner=None) -> tuple[float, float]:
    """Exercise 9 Q2, the given cell: ``(w_es, w_ner)`` for this learner."""
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


def _q2(ev: Evidence) -> str:
    """Lesson 9, combining adapters: one saved adapter that computes the learner's mix of both shipped adapters at once,
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
    Question("ex09_q1", 2, ("clean_base",), _q1, ("sentiment",)),
    Question("ex09_q2", 2, ("combo_folder",), _q2),
)
