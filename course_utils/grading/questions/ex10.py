"""Exercise 10 (lesson 10, another architecture and serving engines): given material and the judges of its questions.

Q1 asks for a LoRA adapter on the course's Llama-architecture base, at a rank and on projections drawn from the
learner's seed (named in words, so that the learner finds Llama's module names). Q2's adapter, which vLLM cannot
take (``modules_to_save=["lm_head"]`` or DoRA, seeded), and Q3's GPT-2 adapter for llama.cpp have seeded shapes
and weights drawn from ``secrets``; their folders, snapshotted by ``record_given`` as the given cells end, are the
only copies of those weights.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import gguf
import numpy as np
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file

from ...adapter_format import CONFIG_FILE, is_lora_name, split_lora_key
from ...assets import course_model
from ...files import list_files
from ...gguf_export import gguf_names
from ...learner import learner_seed
from ...messages import first_line
from ...models import load_base_model
from ...roundtrip import compare_logits
from ..evidence import Evidence, type_name
from .common import (
    Question,
    Wrong,
    adapter_effect,
    adapter_folder,
    folder,
    given_snapshot,
    notebook_type,
    own_rng,
    quiet_save,
    require,
    same_logits,
    secret_rng,
    tokenizer,
    train_looking,
    weights_of,
)

LLAMA = "llama"
# Q1's targets, in the words the question uses (the learner finds Llama's module names).
TARGET_WORDS = {
    "the attention's query and value projections": ("q_proj", "v_proj"),
    "the attention's key and output projections": ("k_proj", "o_proj"),
    "every attention projection (query, key, value and output)": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "every MLP projection (gate, up and down)": ("gate_proj", "up_proj", "down_proj"),
    "the attention's query projection and the MLP's down projection": ("q_proj", "down_proj"),
}
BLOCKED = ("modules_to_save", "dora")    # what vLLM refuses in Q2's adapter
MERGED_WEIGHTS = "model.safetensors"
MERGE_ATOL = 1e-4                         # a float32 merge changes the logits by ~1e-6


def _llama_base():
    return load_base_model(arch=LLAMA)


# ============================================================================ Q1: an adapter on the Llama base
def llama_plan(seed: int) -> dict:
    """Exercise 10 Q1: the rank and the targets (in words and as Llama's module names), from the learner's seed."""
    rng = random.Random(seed * 7 + 1)
    words = rng.choice(sorted(TARGET_WORDS))
    return {"r": rng.choice((4, 6, 8, 12)), "words": words, "targets": TARGET_WORDS[words]}


def llama_task(learner=None) -> tuple[int, str]:
    """Exercise 10 Q1, the given cell: the rank of the adapter the learner must build, and its targets in words."""
    plan = llama_plan(learner_seed(learner))
    return plan["r"], plan["words"]


def _reload_llama(path: Path, what: str):
    """The adapter in ``path`` on a fresh Llama base, loaded by the checker; peft's error as the ✗ line."""
    try:
        return PeftModel.from_pretrained(_llama_base(), str(path)).eval()
    except Exception as exc:  # noqa: BLE001 - peft's own error tells the learner what does not fit
        raise Wrong(f"{what} does not load onto load_base_model(arch='llama'): {type(exc).__name__}: "
                    f"{first_line(exc, 200)}") from None


def _layers_problem(model, plan: dict) -> str | None:
    """Why the LoRA layers of ``model`` are not the plan's: which modules, and each one's rank."""
    wanted = {n for n, _ in _llama_base().named_modules() if n.rsplit(".", 1)[-1] in plan["targets"]}
    layers = {n.removeprefix("base_model.model."): m for n, m in model.named_modules() if isinstance(m, LoraLayer)}
    missing, extra = sorted(wanted - set(layers)), sorted(set(layers) - wanted)
    if missing:
        return (f"the adapter leaves out {len(missing)} of the {len(wanted)} modules asked for (e.g. {missing[0]}): "
                "put LoRA on every layer's projections that the question names.")
    if extra:
        return f"the adapter also adapts {extra[0]}, which the question does not name."
    for name, layer in sorted(layers.items()):
        rank = layer.r.get("default")
        if rank != plan["r"]:
            return f"{name} has rank {rank}, not the r={plan['r']} the question asks for (every layer counts)."
    return None


def _model_state(ev: Evidence, name: str) -> dict:
    """The tensors of model answer ``name`` as the kernel saved them, its active adapter renamed 'default'."""
    entry, info = ev.raw(name), ev.model_info(name)
    require(entry.get("t") in ("model", "same") and info, f"`{name}` should be the PeftModel you saved, not a "
                                                          f"{type_name(ev.value(name))}.")
    require(str(info.get("class", "")).startswith("PeftModel"), f"`{name}` is a {info.get('class')}, not a "
                                                                "PeftModel (a base model with a LoRA adapter).")
    active = [a for a in info.get("active_adapters") or [] if isinstance(a, str)]
    require(len(active) == 1, f"`{name}` has {len(active)} active adapters: activate exactly one.")
    where = (ev.folder / str(entry.get("dir") or entry.get("as")) / "state.safetensors").resolve()
    require(where.is_relative_to(ev.folder.resolve()) and where.is_file(), f"no tensors were saved for `{name}`.")
    return {k.replace(f".{active[0]}.", ".default.") if is_lora_name(k) else k: v
            for k, v in load_file(str(where)).items()}


def _q1(ev: Evidence) -> str:
    """Lesson 10, the same path on Llama: an adapter at the seeded rank on the projections named in words, with
    B trained, saved to a folder that reloads onto the Llama base and computes what the learner's model does."""
    plan = llama_plan(ev.seed)
    path = folder(ev, "folder")
    adapter_folder(path)
    require(not any(".transformer.h." in k for k in weights_of(path)),
            "`folder` holds a GPT-2 adapter (its modules are transformer.h.N....): build it on "
            "load_base_model(arch='llama'), whose projections have other names (lesson 10).")
    reference = _reload_llama(path, "`folder`")
    problem = _layers_problem(reference, plan)
    require(problem is None, problem or "")
    require(adapter_effect(reference) > 0, "the adapter in `folder` changes nothing: its LoRA B matrices are zero, "
                                           "as get_peft_model made them; train it a few steps before saving.")
    candidate = _reload_llama(path, "`folder`")
    result = candidate.load_state_dict(_model_state(ev, "model"), strict=False)
    require(not result.missing_keys and not result.unexpected_keys,
            "`model` does not have the layers of the adapter in `folder`: save the model you built, and pass both.")
    detail = same_logits(reference, candidate.eval(), "`model` (compared with `folder` reloaded)")
    return f"a rank-{plan['r']} Llama adapter on {', '.join(plan['targets'])} in every layer; {detail}"


# ============================================================================ Q2: what vLLM refuses, merged
def blocked_plan(seed: int) -> dict:
    """Exercise 10 Q2: what vLLM refuses in the given adapter, its rank and its targets, from the learner's seed."""
    rng = random.Random(seed * 7 + 2)
    return {"kind": rng.choice(BLOCKED), "r": rng.choice((4, 8)),
            "targets": list(rng.choice((("q_proj", "v_proj"), ("q_proj", "k_proj", "v_proj", "o_proj"),
                                        ("up_proj", "down_proj"))))}


def _blocked_config(plan: dict) -> LoraConfig:
    extra = {"modules_to_save": ["lm_head"]} if plan["kind"] == "modules_to_save" else {"use_dora": True}
    return LoraConfig(r=plan["r"], lora_alpha=2 * plan["r"], target_modules=plan["targets"], **extra)


def blocked_adapter(target, learner=None) -> Path:
    """Exercise 10 Q2: a trained-looking Llama adapter that vLLM refuses (``modules_to_save=["lm_head"]`` or DoRA,
    seeded), saved into ``target``; its weights are drawn from ``secrets``."""
    plan = blocked_plan(learner_seed(learner))
    with secret_rng():
        model = get_peft_model(_llama_base(), _blocked_config(plan))
        train_looking(model)
    quiet_save(model, Path(target))
    return Path(target)


def _blocked_reference(ev: Evidence):
    """The given adapter, rebuilt by the checker from its snapshot on the Llama base; fails for another learner's."""
    plan = blocked_plan(ev.seed)
    path = given_snapshot(ev, "ex10_given_vllm", "blocked")
    try:
        config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    kind = "dora" if config.get("use_dora") else "modules_to_save" if config.get("modules_to_save") else None
    same = kind == plan["kind"] and config.get("r") == plan["r"]
    require(same and sorted(config.get("target_modules") or []) == sorted(plan["targets"]),
            "the folder `blocked` was made for another learner: run the notebook from its first cell.")
    return plan, _reload_llama(path, "the folder `blocked`")


def _merged_files(path: Path, name: str) -> dict:
    """The tensors of the full model saved in ``path``; fails for an adapter folder or another model."""
    files = list_files(path)
    require(files, f"{path.name} is empty: nothing was saved there.")
    require(CONFIG_FILE not in files, f"`{name}` holds an adapter ({CONFIG_FILE}): vLLM refuses this one; merge "
                                      "it into the base (merge_and_unload) and save the merged model.")
    require("config.json" in files and MERGED_WEIGHTS in files,
            f"`{name}` holds no full model (config.json and {MERGED_WEIGHTS}; it has {', '.join(files)}): save "
            "the merged model with save_pretrained.")
    try:
        model_type = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        model_type = None
    require(model_type == LLAMA, f"`{name}` holds a {model_type} model, not the Llama base with the adapter merged.")
    return load_file(str(path / MERGED_WEIGHTS))


def _plain_llama(state: dict, name: str):
    """A plain Llama model of the course's own config holding ``state`` (every key and shape must fit)."""
    config = transformers.AutoConfig.from_pretrained(course_model(LLAMA))
    model = transformers.LlamaForCausalLM(config).eval()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise Wrong(f"`{name}` does not hold the Llama base's tensors ({first_line(exc, 120)}): save the merged "
                    "model, not a part of it.") from None
    return model


def _q2(ev: Evidence) -> str:
    """Lesson 10, serving engines: an adapter vLLM refuses, merged into the Llama base and saved as a full model
    that loads as a plain ``AutoModelForCausalLM`` and computes what the adapter does."""
    plan, reference = _blocked_reference(ev)
    state = _merged_files(folder(ev, "served"), "served")
    model = _plain_llama(state, "served")
    base = _llama_base()
    require(compare_logits(base, model, tokenizer()).max_abs_diff > 0,
            "`served` computes the base model: the adapter was not merged into it (merge_and_unload).")
    if plan["kind"] == "modules_to_save":
        require(not torch.equal(model.lm_head.weight, base.lm_head.weight),
                "`served` keeps the base's lm_head: the adapter's trained copy of it (modules_to_save) is part of "
                "the adapter, and the merged model must hold it.")
    others = sorted({str(t.dtype).removeprefix("torch.") for t in state.values()} - {"float32"})
    what = f"`served` (saved in {', '.join(others)}; save the merge in float32)" if others else "`served`"
    same_logits(reference, model, what, atol=MERGE_ATOL)   # the merge's rounding differs from run to run
    return (f"the {plan['kind']} adapter merged and saved as a plain Llama model: its logits match the adapter's "
            f"(within {MERGE_ATOL:g})")


# ============================================================================ Q3: a GGUF LoRA for llama.cpp
def gguf_plan(seed: int) -> dict:
    """Exercise 10 Q3: the GPT-2 adapter's rank and targets, from the learner's seed."""
    rng = random.Random(seed * 7 + 3)
    return {"r": rng.choice((2, 4, 8)), "targets": ["c_attn", *rng.choice((["c_fc"], ["c_proj"], []))]}


def gguf_adapter(target, learner=None) -> Path:
    """Exercise 10 Q3: a trained-looking GPT-2 adapter saved into ``target``; its rank and targets are seeded,
    its weights drawn from ``secrets``."""
    plan = gguf_plan(learner_seed(learner))
    with secret_rng():
        model = get_peft_model(load_base_model(), LoraConfig(r=plan["r"], lora_alpha=2 * plan["r"],
                                                             target_modules=plan["targets"], fan_in_fan_out=True))
        train_looking(model)
    quiet_save(model, Path(target))
    return Path(target)


def _expected_gguf(ev: Evidence) -> tuple[dict, float]:
    """``{GGUF tensor name: array}`` and alpha of the given GPT-2 adapter, from its snapshot."""
    plan = gguf_plan(ev.seed)
    path = given_snapshot(ev, "ex10_given_gguf", "tiny")
    weights = weights_of(path)
    config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    require(config.get("r") == plan["r"] and sorted(config.get("target_modules") or []) == sorted(plan["targets"]),
            "the folder `tiny` was made for another learner: run the notebook from its first cell.")
    pairs = {split_lora_key(k): v for k, v in weights.items()}
    names = gguf_names({module for module, _ in pairs})
    return ({f"{names[m]}.lora_{ab.lower()}": v.float().numpy() for (m, ab), v in pairs.items()},
            float(config["lora_alpha"]))


def _gguf_reader(ev: Evidence, name: str):
    value = ev.value(name)
    notebook_type(value, name)
    require(isinstance(value, Path), f"`{name}` should be the .gguf file's path, not a {type_name(value)}.")
    require(not value.is_dir(), f"`{name}` is a folder: pass the .gguf file that export_gguf wrote.")
    require(value.is_file(), f"nothing was saved at {ev.original(name)!r}: run export_gguf, and pass the file it "
                             "returns.")
    try:
        return gguf.GGUFReader(value)
    except Exception as exc:  # noqa: BLE001 - any file that is not GGUF fails in one line
        raise Wrong(f"`{name}` is not a GGUF file ({type(exc).__name__}): write it with export_gguf.") from None


def _field(reader, key: str):
    found = reader.fields.get(key)
    return found.contents() if found is not None else None


def _q3(ev: Evidence) -> str:
    """Lesson 10, llama.cpp: the given GPT-2 adapter as a GGUF LoRA holding its very tensors and alpha."""
    expected, alpha = _expected_gguf(ev)
    reader = _gguf_reader(ev, "gguf_file")
    require(_field(reader, "general.type") == "adapter" and _field(reader, "adapter.type") == "lora",
            "`gguf_file` is a GGUF file but not a LoRA adapter: export the adapter folder `tiny`.")
    require(_field(reader, "general.architecture") == "gpt2", "`gguf_file` is not for a GPT-2 base.")
    got = {t.name: np.array(t.data) for t in reader.tensors}
    require(set(got) == set(expected), f"`gguf_file` holds {len(got)} tensors, not the {len(expected)} of the "
                                       "adapter in `tiny`: export that folder.")
    require(all(got[k].shape == v.shape and np.array_equal(got[k], v) for k, v in expected.items()),
            "the tensors in `gguf_file` are not the ones saved in `tiny`: export that folder, unchanged.")
    require(_field(reader, "adapter.lora.alpha") == alpha, "`gguf_file`'s adapter.lora.alpha is not the adapter's "
                                                           "lora_alpha: llama.cpp would scale it wrongly.")
    return f"{len(got)} LoRA tensors, equal to those in `tiny`, and its alpha, ready for llama.cpp's --lora"


QUESTIONS = (
    Question("ex10_q1", 2, ("model", "folder"), own_rng(_q1)),
    Question("ex10_q2", 2, ("served",), own_rng(_q2), folders=("served",)),
    Question("ex10_q3", 2, ("gguf_file",), own_rng(_q3), folders=("gguf_file",)),
)
