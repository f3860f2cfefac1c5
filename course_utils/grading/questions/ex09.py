"""Exercise 9 (lesson 9, combining adapters, hot-swapping, dtypes and empty saves): given material and judges.

Q1's given cell marks the base model it wraps with a mark drawn from ``secrets``; Q2's mix of the two shipped adapters
is seeded by the learner. Q3's teammate ran under a simulated ZeRO-3 (``zero3_sim``): the shape of their adapter is
seeded, its weights drawn from ``secrets``; the folder, snapshotted by ``record_given`` as the given cell ends, holds
the only copy of them.
"""
from __future__ import annotations

import random
import warnings
from functools import lru_cache
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file, save_file

from ...adapter_format import WEIGHTS_FILE, is_lora_name
from ...expected_errors import describe_error
from ...learner import learner_seed
from ...models import load_base_model
from ...roundtrip import compare_logits, logits_of, sample_batch
from ...shipped import shipped_adapter
from ...zero3_sim import gathered_state_dict, simulate_zero3
from ..evidence import Evidence, type_name
from .common import (
    Question,
    Wrong,
    adapter_folder,
    folder,
    given_snapshot,
    own_rng,
    quiet_save,
    require,
    same_logits,
    secret_rng,
    tokenizer,
    train_looking,
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
        empty = not any(is_lora_name(name) for name in info.get("params") or {})
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
            if is_lora_name(name, "B"):
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


# ============================================================================ Q3: an empty ZeRO-3 save, fixed
GATHERED = "gathered.safetensors"
TARGETS = (["c_attn"], ["c_attn", "c_proj"], ["c_attn", "c_fc"], ["c_fc", "c_proj"])


def zero3_plan(seed: int) -> dict:
    """Exercise 9 Q3: the rank and target modules of the teammate's adapter, from the learner's seed."""
    rng = random.Random(seed * 7 + 5)
    return {"r": rng.choice((4, 8, 12)), "targets": rng.choice(TARGETS)}


def _plan_config(plan: dict) -> LoraConfig:
    return LoraConfig(r=plan["r"], lora_alpha=2 * plan["r"], target_modules=plan["targets"], fan_in_fan_out=True)


def zero3_teammate(target, learner=None) -> Path:
    """Exercise 9 Q3, the given cell: a teammate's run under a simulated ZeRO-3 (``simulate_zero3``, lesson 9), saved
    into ``target``: ``adapter/``, what their plain ``save_pretrained`` wrote (tensors of shape [0]), and
    ``gathered.safetensors``, the state dict they gathered (``accelerator.get_state_dict``: every weight of their
    PeftModel). The adapter's rank and targets are seeded; its trained-looking weights are drawn from ``secrets``."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    with secret_rng():
        model = get_peft_model(load_base_model(), _plan_config(zero3_plan(learner_seed(learner))))
        train_looking(model)
    simulate_zero3(model)
    quiet_save(model, target / "adapter")
    save_file(gathered_state_dict(model), str(target / GATHERED), metadata={"format": "pt"})
    return target


def _teammate_weights(ev: Evidence) -> dict:
    """The teammate's LoRA tensors under peft's saved names, from the snapshot of their gathered state dict."""
    file = given_snapshot(ev, "ex09_given_zero3", "teammate") / GATHERED
    require(file.is_file(), f"the folder `teammate` holds no {GATHERED}: run the notebook from its first cell.")
    model = get_peft_model(load_base_model(), _plan_config(zero3_plan(ev.seed)))
    gathered, shapes = load_file(str(file)), {k: v.shape for k, v in model.state_dict().items()}
    require({k: v.shape for k, v in gathered.items()} == shapes, "the folder `teammate` was made for another "
                                                                 "learner: run the notebook from its first cell.")
    return get_peft_model_state_dict(model, state_dict=gathered)


def _saved_tensors(path: Path) -> dict:
    """The folder's tensors; fails on a pickle file and on an empty (ZeRO-3) save, saying which."""
    require((path / WEIGHTS_FILE).is_file(), f"the weights are in adapter_model.bin (a pickle), not {WEIGHTS_FILE}: "
                                             "save in the default safetensors format (no safe_serialization=False).")
    saved = load_file(str(path / WEIGHTS_FILE))
    require(saved, f"{WEIGHTS_FILE} holds no tensors at all: an empty save, like Trainer's under ZeRO-3 without "
                   "stage3_gather_16bit_weights_on_model_save; pass the gathered weights (lesson 9, section 5).")
    empty = [k for k, v in saved.items() if v.numel() == 0]
    if empty:
        raise Wrong(f"{len(empty)} of the {len(saved)} saved tensors have shape [0] (e.g. {empty[0]}): the partitioned "
                    "model was saved as it is; pass the gathered state dict as state_dict= (lesson 9, section 5).")
    extra = [k for k in saved if not is_lora_name(k)]
    require(not extra, f"{WEIGHTS_FILE} also holds {len(extra)} weights of the base model (e.g. {extra[:1]}): the whole "
                       "gathered state dict was written; save_pretrained(out, state_dict=...) keeps the adapter's only.")
    return saved


def _reloaded(path: Path):
    try:
        with warnings.catch_warnings():   # a folder whose names match nothing warns; the verdict says it in one line
            warnings.simplefilter("ignore")
            return PeftModel.from_pretrained(load_base_model(), str(path))
    except Exception as exc:   # any failure to load is the learner's folder: one line, never a crash
        shown = " ".join(describe_error(exc, lines=2).split())   # torch's first line says only where it failed
        raise Wrong("the folder does not load onto the course's base model: " + (
            shown if len(shown) <= 300 else shown[:300] + "...")) from None


def _q3(ev: Evidence) -> str:
    """Lesson 9, empty adapters: a working adapter folder saved from the gathered state dict of a teammate whose
    ZeRO-3 save holds only tensors of shape [0]."""
    expected = _teammate_weights(ev)
    path = folder(ev, "fixed_folder")
    adapter_folder(path)
    saved = _saved_tensors(path)
    reloaded = _reloaded(path)
    reference = get_peft_model(load_base_model(), _plan_config(zero3_plan(ev.seed)))
    set_peft_model_state_dict(reference, expected)
    if compare_logits(load_base_model(), reloaded, tokenizer()).ok:
        zeros = all(not v.any() for k, v in saved.items() if is_lora_name(k, "B"))
        raise Wrong("the reloaded adapter computes the base model: " + (
            "its LoRA B matrices are zero, a fresh adapter's, not the teammate's weights." if zeros else
            "no saved tensor reached a LoRA layer (their names do not match the adapter's)."))
    mine = get_peft_model_state_dict(reloaded)
    require(set(mine) == set(expected), "the reloaded adapter has other LoRA layers than the teammate's (its rank or "
                                        "target modules differ): use the teammate's adapter_config.json.")
    require(all(torch.equal(mine[k], expected[k]) for k in expected), "the reloaded adapter does not hold the "
            f"teammate's weights from `teammate/{GATHERED}` (other values, or rounded to another dtype).")
    return f"reloads from {path.name}/ with the teammate's gathered weights: " + same_logits(
        reference.eval(), reloaded, "the reloaded adapter")


QUESTIONS = (
    Question("ex09_q1", 2, ("clean_base",), _q1, ("sentiment",)),
    Question("ex09_q2", 2, ("combo_folder",), _q2),
    Question("ex09_q3", 2, ("fixed_folder",), own_rng(_q3), folders=("fixed_folder",)),
)
