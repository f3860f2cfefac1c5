"""Exercise 11 (lesson 11, merging and saving in practice): given material and the judges of its questions.

Q1's teammate compiled the base with ``torch.compile`` before ``get_peft_model``, so ``save_pretrained`` wrote every
key with ``_orig_mod.`` in it; Q2's adapter, to merge for a 4-bit deployment, was trained with QLoRA. Both adapters
are made from the learner's seed (rank, alpha, target modules) with weights from ``secrets``; the folders,
snapshotted by ``record_given`` as the given cells end, are the only copies of those weights.
"""
from __future__ import annotations

import json
import random
import warnings
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from ...adapter_format import CONFIG_FILE, WEIGHTS_FILE, is_lora_name
from ...files import list_files
from ...learner import learner_seed
from ...messages import first_line
from ...models import load_base_model
from ...roundtrip import compare_logits
from ..evidence import Evidence
from .common import (
    Question,
    Wrong,
    folder,
    given_snapshot,
    holds_on_course_base,
    own_rng,
    peft_model,
    quiet_save,
    require,
    runs_as_remapped,
    secret_rng,
    tokenizer,
)

COMPILED = "_orig_mod."          # the attribute under which torch.compile's OptimizedModule keeps the model
MERGED_ATOL = 1e-4               # a float32 merge in another order stays far closer than this
FOUR_BIT_BLOCK = 64              # bitsandbytes' NF4 block: 16 values times its absmax
MODEL_FILE = "model.safetensors"
ARCHITECTURE = ("model_type", "vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner")
Q1_WRONG = ("the LoRA B matrices of `repaired` are zero: no saved tensor reached its layers, so it computes the "
            "base model (lesson 11).",
            "the active adapter of `repaired` does not hold the tensors saved in `compiled`, every layer of them: "
            "load it from that folder.")
TARGETS = (["c_attn"], ["c_attn", "c_fc"], ["c_attn", "c_proj"])   # each leaves some linear layer untouched


def _plan(seed: int, salt: int) -> dict:
    rng = random.Random(seed * 11 + salt)
    r = rng.choice((4, 8, 16))
    return {"r": r, "alpha": r * rng.choice((1, 2, 4)), "targets": list(rng.choice(TARGETS))}


def compiled_plan(seed: int) -> dict:
    """Exercise 11 Q1: the teammate's adapter shape (rank, alpha, target modules), from the learner's seed."""
    return _plan(seed, 1)


def deploy_plan(seed: int) -> dict:
    """Exercise 11 Q2: the shape of the adapter to merge (rank, alpha, target modules), from the learner's seed."""
    return _plan(seed, 2)


def _config(plan: dict) -> LoraConfig:
    return LoraConfig(r=plan["r"], lora_alpha=plan["alpha"], target_modules=plan["targets"], fan_in_fan_out=True)


def _trained(base, plan: dict):
    """``base`` with the plan's adapter, its B matrices drawn at random as training would move them."""
    model = get_peft_model(base, _config(plan))
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if is_lora_name(name, "B"):
                weight.normal_(0, 0.05)   # stands in for training
    return model


def compiled_run(target, learner=None) -> Path:
    """Exercise 11 Q1: a teammate's adapter trained on ``torch.compile(base)`` and saved with ``save_pretrained``
    into ``target``: every key reads ``base_model.model._orig_mod.transformer...``. Shape seeded, weights secret."""
    target = Path(target)
    with secret_rng(), warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the teammate's run; its messages are not the exercise's
        model = _trained(torch.compile(load_base_model(), backend="eager"), compiled_plan(learner_seed(learner)))
    quiet_save(model, target)
    return target


def deploy_adapter(target, learner=None) -> Path:
    """Exercise 11 Q2: an adapter trained with QLoRA, saved into ``target``. Shape seeded, weights secret."""
    target = Path(target)
    with secret_rng():
        model = _trained(load_base_model(), deploy_plan(learner_seed(learner)))
    quiet_save(model, target)
    return target


def four_bit_base():
    """Exercise 11 Q2: the course's base model loaded in 4-bit (bitsandbytes NF4 on CPU), as QLoRA trains on it."""
    # only the given cell loads in 4-bit; the judges, run by the grader, never need the quantization config
    from transformers import BitsAndBytesConfig

    return load_base_model(quantization_config=BitsAndBytesConfig(load_in_4bit=True))


# ============================================================================ Q1: a compiled run's adapter
def _compiled_weights(path: Path, plan: dict) -> dict:
    """The snapshot's tensors under the names the course's model has; fails when it is not this learner's."""
    require(WEIGHTS_FILE in {p.name for p in path.iterdir()}, f"the folder `compiled` holds no {WEIGHTS_FILE}: run "
                                                               "the notebook from its first cell.")
    weights = load_file(str(path / WEIGHTS_FILE))
    theirs = f"base_model.model.{COMPILED}transformer."
    leaves = {k.split(".lora_")[0].rsplit(".", 1)[-1] for k in weights}
    a_shapes = {tuple(v.shape)[0] for k, v in weights.items() if is_lora_name(k, "A")}
    require(weights and all(k.startswith(theirs) for k in weights) and leaves == set(plan["targets"])
            and a_shapes == {plan["r"]}, "the folder `compiled` was made for another learner: run the notebook "
                                         "from its first cell.")
    return {k.replace(f".{COMPILED}", ".", 1): v for k, v in weights.items()}


def _q1(ev: Evidence) -> str:
    """Lesson 11, ``torch.compile``'s ``_orig_mod.`` keys: the teammate's adapter loaded so that its weights are used
    (the folder holds the only copy of them)."""
    path = given_snapshot(ev, "ex11_given_compiled", "compiled")
    expected = _compiled_weights(path, compiled_plan(ev.seed))
    info = ev.model_info("repaired")
    if str(info.get("class")).startswith("PeftModel") and info.get("base_class") is None:
        raise Wrong("`repaired` is a PeftModel around a model that is not the course's plain base model (a compiled "
                    "one?): the key names are the fault, not the base; load onto load_base_model().")
    model = peft_model(ev, "repaired")
    holds_on_course_base(model, "repaired", expected, Q1_WRONG)
    return "the compiled run's weights are in use: " + runs_as_remapped(model, "repaired", path, COMPILED)


# ============================================================================ Q2: a full-precision merge
def _not_an_adapter(files: list[str]) -> None:
    if CONFIG_FILE in files and "config.json" in files:
        raise Wrong(f"the folder holds both {CONFIG_FILE} and a full model's config.json: the merge was saved into "
                    "the adapter's folder, and loaders take the folder for an adapter. Save it to a folder of its "
                    "own.")
    require(CONFIG_FILE not in files, f"the folder holds {CONFIG_FILE}: it is an adapter, not a merged model "
                                      "(save what merge_and_unload() returns).")
    require("config.json" in files, f"no config.json in the folder (it holds {', '.join(files) or 'nothing'}): "
                                    "save the merged model with save_pretrained.")


def _merged_state(path: Path) -> dict:
    """The folder's weights, after the checks a plain ``AutoModelForCausalLM`` load needs."""
    files = list_files(path)
    _not_an_adapter(files)
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise Wrong("the folder's config.json is not readable JSON.") from None
    require(isinstance(config, dict), "the folder's config.json is not a model config.")
    require("quantization_config" not in config, "the folder is a 4-bit checkpoint (config.json has a "
                                                 "quantization_config): it was merged into the 4-bit base. Merge into "
                                                 "a full-precision base.")
    require(MODEL_FILE in files, f"no {MODEL_FILE} in the folder: save with save_pretrained (safetensors).")
    return load_file(str(path / MODEL_FILE))


def _merged_model(path: Path):
    """The course's base model holding the folder's weights in float32 (a dequantized layer's transposed layout is
    turned back), or a ✗ line when they do not fit it."""
    state = _merged_state(path)
    model = load_base_model()
    own = model.state_dict()
    fixed = {}
    for key, tensor in state.items():
        require(key in own, f"the folder's weights hold `{key}`, which the course's model does not have.")
        if tensor.ndim == 2 and tensor.shape != own[key].shape and tensor.T.shape == own[key].shape:
            tensor = tensor.T   # an nn.Linear's layout, as dequantize() leaves a Conv1D layer
        require(tensor.shape == own[key].shape, f"`{key}` has shape {list(tensor.shape)} in the folder, "
                                                f"{list(own[key].shape)} in the course's model.")
        fixed[key] = tensor.float()
    missing = sorted(set(own) - set(fixed) - {"lm_head.weight"})
    require(not missing, f"the folder's weights lack {len(missing)} tensors of the model (e.g. `{missing[0]}`)."
            if missing else "")
    model.load_state_dict(fixed, strict=False)
    return model


def _matrices(model) -> list[torch.Tensor]:
    return [t for k, t in model.state_dict().items() if t.ndim == 2 and ".h." in k]


def _four_bit(weight: torch.Tensor) -> bool:
    """Whether ``weight`` (either layout) has at most 16 values in each block of 64: what NF4 dequantizes to."""
    for layout in (weight.T, weight):
        flat = layout.contiguous().flatten()
        if flat.numel() % FOUR_BIT_BLOCK:
            continue
        blocks = flat.view(-1, FOUR_BIT_BLOCK).sort(dim=1).values
        if int(((blocks[:, 1:] != blocks[:, :-1]).sum(dim=1) + 1).max()) <= 16:
            return True
    return False


def _rounding(model) -> str | None:
    """``"4-bit"`` or ``"16-bit"`` when every weight matrix of the blocks shows that rounding, else None."""
    matrices = _matrices(model)
    if all(_four_bit(w) for w in matrices):
        return "4-bit"
    if any(all(torch.equal(w, w.to(dtype).float()) for w in matrices) for dtype in (torch.bfloat16, torch.float16)):
        return "16-bit"
    return None


def _scale_ratio(model, base, reference) -> float | None:
    """How many times the adapter's scale the folder's change of the weights is, when it is that change scaled."""
    mine, start, merged = model.state_dict(), base.state_dict(), reference.state_dict()
    got = torch.cat([(mine[k] - start[k]).flatten() for k in start if start[k].ndim == 2])
    want = torch.cat([(merged[k] - start[k]).flatten() for k in start if start[k].ndim == 2])
    ratio = float(got @ want / (want @ want))
    return ratio if float((got - ratio * want).norm() / want.norm()) < 1e-3 else None


def _why_different(model, reference, plan: dict, gap: float) -> str:
    rounding = _rounding(model)
    if rounding == "4-bit":
        return (f"the folder's weights show 4-bit rounding (16 values in each block of {FOUR_BIT_BLOCK}; logits "
                f"{gap:.1e} off): it was merged into the 4-bit base. Merge into a full-precision base (lesson 11).")
    if rounding == "16-bit":
        return (f"the folder's weights are rounded to 16 bits (logits {gap:.1e} off, allowed {MERGED_ATOL:g}): "
                "merge and save in float32; the deployment quantizes from that.")
    ratio = _scale_ratio(model, load_base_model(), reference)
    if ratio is not None and abs(ratio) < 1e-6:
        return "the folder holds the base model unmerged: save what merge_and_unload() returns."
    if ratio is not None:
        return (f"the folder holds the adapter merged at {ratio:.3g} times its scale (lora_alpha / r = "
                f"{plan['alpha'] / plan['r']:g}): merge it as loaded.")
    return f"the merged weights are not those of the adapter in `adapter` (logits {gap:.1e} off): merge that one."


def _loads_plainly(path: Path) -> None:
    """Fail unless ``AutoModelForCausalLM.from_pretrained`` loads the folder as the course's model, as serving will
    (its config is compared with the course's first, so that the load stays the course model's size)."""
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    own = load_base_model().config.to_dict()
    changed = sorted(k for k in ARCHITECTURE if config.get(k) != own.get(k))
    require(not changed, f"the folder's config.json describes another model ({', '.join(changed)} differ from the "
                         "course's): save the merged course model with save_pretrained." if changed else "")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    except Exception as exc:  # noqa: BLE001 - any failure to load is the answer's, in one line
        raise Wrong(f"AutoModelForCausalLM.from_pretrained cannot load the folder ({type(exc).__name__}: "
                    f"{first_line(exc, 160)}): save the merged model with save_pretrained.") from None


def _adapter_snapshot(ev: Evidence, plan: dict) -> Path:
    path = given_snapshot(ev, "ex11_given_adapter", "adapter")
    require(WEIGHTS_FILE in {p.name for p in path.iterdir()}, f"the folder `adapter` holds no {WEIGHTS_FILE}: run "
                                                               "the notebook from its first cell.")
    a_shapes = {tuple(v.shape)[0] for k, v in load_file(str(path / WEIGHTS_FILE)).items() if is_lora_name(k, "A")}
    require(a_shapes == {plan["r"]}, "the folder `adapter` was made for another learner: run the notebook from "
                                     "its first cell.")
    return path


def _q2(ev: Evidence) -> str:
    """Lesson 11, QLoRA merges: the adapter merged into a full-precision base and saved as a full model of its own,
    which loads with ``AutoModelForCausalLM`` and computes the judge's own float32 merge."""
    plan = deploy_plan(ev.seed)
    path = _adapter_snapshot(ev, plan)
    model = _merged_model(folder(ev, "merged_folder"))
    reference = PeftModel.from_pretrained(load_base_model(), str(path)).merge_and_unload().eval()
    result = compare_logits(reference, model, tokenizer(), atol=MERGED_ATOL)
    if not result.ok:
        raise Wrong(_why_different(model, reference, plan, result.max_abs_diff))
    _loads_plainly(folder(ev, "merged_folder"))
    return (f"a full-precision merge: logits match the checker's float32 merge (max |difference| "
            f"{result.max_abs_diff:.1e}, allowed {MERGED_ATOL:g})")


QUESTIONS = (
    Question("ex11_q1", 2, ("repaired",), own_rng(_q1)),
    Question("ex11_q2", 2, ("merged_folder",), own_rng(_q2), folders=("merged_folder",)),
)
