"""Exercise 3 (lesson 3, gotchas and error recovery): the folders it gives, and the judges of its questions.

Each learner gets their own data (``learner_seed``): Q1's adapter name, Q2's tutorial rank and alpha, Q4's
adapter and the fault in it. The weights of Q1's and Q4's folders are drawn with ``secrets``: no recipe can make
them again, so an answer holds them only if it was loaded from (or repaired out of) that folder. The given cells
snapshot those folders (``record_given``) and the judges compare with the snapshots.
"""
from __future__ import annotations

import copy
import json
import math
import os
import random
import secrets
import shutil
import warnings
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file

from ...adapter_format import CONFIG_FILE, WEIGHTS_FILE, is_lora_name
from ...files import list_files
from ...learner import learner_seed
from ...messages import first_line
from ...models import load_base_model
from ...shipped import shipped_adapter
from ..evidence import Evidence
from .common import (
    Question,
    Wrong,
    active,
    adapter_folder,
    dtype_counts,
    folder,
    holds,
    holds_file,
    lora_leaf_names,
    notebook_type,
    peft_model,
    reload,
    require,
    same_logits,
    shipped,
    weights_of,
)
from .ex03_plain import ROUND_TRIP_ATOL, plain_with_lora, q1_plain

SHARED_ID = "ex03_given_shared"   # the given cells that snapshot their folders (their nbgrader grade_ids)
SENT_ID = "ex03_given_sent"
ADAPTER_NAMES = ("sentiment", "reviews", "tone", "polarity", "feedback", "support")
FAULTS = ("rank", "targets", "peft_type", "weights_name")
TARGET_SETS = (("c_attn",), ("c_attn", "c_fc"), ("c_attn", "c_proj"), ("c_fc",))
RENAMED = "adapter_model (1).safetensors"   # a second download of the weights file, as a browser names it


def _rng(seed: int, what: str) -> random.Random:
    return random.Random(f"ex03-{what}-{seed}")


def _secret_adapter(rank: int, alpha: int, targets, adapter_name: str = "default") -> PeftModel:
    """A LoRA adapter with random non-zero weights drawn from ``secrets`` (no seed can make it again)."""
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets), init_lora_weights=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(secrets.randbits(63))
        return get_peft_model(load_base_model(), config, adapter_name=adapter_name)


# ---------------------------------------------------------------------------------------- Q1
def shared_name(seed: int) -> str:
    """The name the colleague gave their adapter in Q1 (it names the subfolder it was saved into)."""
    return _rng(seed, "q1").choice(ADAPTER_NAMES)


def colleague_share(target, learner: str) -> Path:
    """Exercise 3 Q1: a colleague's adapter saved under the name they gave it; only this folder holds its weights."""
    shutil.rmtree(target, ignore_errors=True)
    _secret_adapter(8, 16, ("c_attn",), shared_name(learner_seed(learner))).save_pretrained(str(target))
    return Path(target)


def _snapshot(ev: Evidence, given_id: str, name: str) -> Path:
    snap = ev.earlier(given_id)
    path = snap.value(name) if snap is not None and snap.has(name) else None
    require(isinstance(path, Path) and path.is_dir(), f"the course has no record of the folder `{name}` its given "
                                                      "cell made: run the notebook from its first cell.")
    return path


def _q1(ev: Evidence) -> str:
    """Lesson 3 (section 6, the error messages): the colleague's adapter, reloaded from the subfolder its name put
    it in. Its weights are the folder's (as the given cell wrote it) and nowhere else; trainable or not."""
    snap = _snapshot(ev, SHARED_ID, "shared")
    subfolders = sorted(p for p in snap.iterdir() if (p / WEIGHTS_FILE).is_file())
    require(subfolders, f"no adapter under {snap.name} when it was given: run its given cell again.")
    plain = plain_with_lora(ev, "fixed")
    if plain is not None:
        return q1_plain(ev, plain, subfolders[0], f"{snap.name}/{subfolders[0].name}")
    model = peft_model(ev, "fixed")
    adapter = active(model, "fixed")
    require(holds(model, adapter, weights_of(subfolders[0])),
            f"the active adapter of `fixed` does not hold the weights saved in `shared` (in {snap.name}/"
            f"{subfolders[0].name}/): load it from that folder, not from another model or a recipe.")
    return f"loaded from shared/{subfolders[0].name}/; " + same_logits(reload(subfolders[0]), model, "`fixed`",
                                                                       atol=ROUND_TRIP_ATOL)


# ---------------------------------------------------------------------------------------- Q2
def tutorial_spec(seed: int) -> tuple[int, int]:
    """The rank and lora_alpha of Q2's tutorial config."""
    rng = _rng(seed, "q2")
    return rng.choice((4, 6, 8, 12, 16)), rng.choice((8, 16, 24, 32))


def tutorial_config(learner: str) -> LoraConfig:
    """Exercise 3 Q2: a config from a tutorial for another architecture (its rank and alpha are the learner's)."""
    rank, alpha = tutorial_spec(learner_seed(learner))
    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.05, target_modules=["qkv_proj"])


def _layer_problem(model, rank: int, alpha: float) -> str | None:
    """Why some LoRA layer of ``model`` does not have rank ``rank`` and scale ``alpha / rank``; None if all do."""
    layers = [(n.removeprefix("base_model.model."), m) for n, m in model.named_modules() if isinstance(m, LoraLayer)]
    wrong_rank = [(n, m.r["default"]) for n, m in layers if m.r["default"] != rank]
    if wrong_rank:
        return (f"{len(wrong_rank)} of the {len(layers)} LoRA layers have a rank other than the tutorial's {rank} "
                f"(e.g. {wrong_rank[0][0]} has r={wrong_rank[0][1]}): look at every setting that changes a layer's "
                "rank (rank_pattern among them).")
    want = alpha / rank
    wrong_scale = [(n, m.scaling["default"]) for n, m in layers if not math.isclose(m.scaling["default"], want)]
    if wrong_scale:
        return (f"{len(wrong_scale)} of the {len(layers)} LoRA layers scale their update by something other than "
                f"lora_alpha / r = {alpha}/{rank} (e.g. {wrong_scale[0][0]}: {wrong_scale[0][1]:g}): keep the "
                "tutorial's lora_alpha, and look at alpha_pattern and use_rslora.")
    return None


# Settings that make something other than the tutorial's plain LoRA adapter, and why each is refused.
VARIANTS = (
    ("lora_bias", "adds a trainable bias to LoRA's B matrices"),
    ("alora_invocation_tokens", "makes an activated LoRA (it acts only after the invocation tokens)"),
    ("arrow_config", "makes an Arrow routing adapter"),
    ("use_bdlora", "makes a block-diagonal LoRA"),
    ("layer_replication", "replicates layers of the base"),
    ("trainable_token_indices", "trains token embeddings as well"),
    ("target_parameters", "targets parameters instead of modules"),
)
BASE_REWRITING_INITS = ("pissa", "olora", "corda", "eva", "loftq")


def _variant_problem(config: LoraConfig, alpha: int) -> str | None:
    """Why ``config`` is not the tutorial's plain LoRA with its lora_alpha; None when it is."""
    for field, what in VARIANTS:
        if getattr(config, field, None) not in (None, False, {}, [], ()):
            return f"`config` sets {field}, which {what}: the task asks for the tutorial's plain LoRA."
    init = config.init_lora_weights
    if isinstance(init, str) and init.lower().startswith(BASE_REWRITING_INITS):
        return (f"`config` initialises LoRA with {init!r}, which rewrites the base model's weights: keep an "
                "initialisation that leaves the base as it is.")
    if config.inference_mode:
        return "`config` has inference_mode=True: nothing would train; the tutorial's config is for training."
    if config.use_rslora:
        return "`config` uses use_rslora, which scales by lora_alpha / sqrt(r): keep the tutorial's scaling."
    if config.lora_alpha != alpha:
        return (f"`config` has lora_alpha={config.lora_alpha:g}, not the tutorial's {alpha}: the task keeps the "
                "tutorial's rank and alpha.")
    return None


def _q2(ev: Evidence) -> str:
    """Lesson 3 (section 6, target modules that do not exist): the tutorial's rank and alpha kept, LoRA on the
    fused q/k/v projection of every layer and nothing else; every layer's effective rank and scale checked."""
    rank, alpha = tutorial_spec(ev.seed)
    config = ev.value("config")
    notebook_type(config, "config")
    require(isinstance(config, LoraConfig), f"`config` is a {getattr(config, 'type_name', type(config).__name__)}, "
                                            "not a LoraConfig.")
    require(not config.use_dora, "`config` makes a DoRA adapter (use_dora): the task asks for plain LoRA.")
    problem = _variant_problem(config, alpha)
    require(problem is None, problem or "")
    base = load_base_model()
    try:
        model = get_peft_model(base, copy.deepcopy(config))
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise Wrong(f"get_peft_model still fails with it: {type(exc).__name__}: {first_line(exc, 160)}") from None
    leaves = lora_leaf_names(model)
    require(set(leaves) == {"c_attn"}, f"LoRA lands on {sorted(leaves)}: the attention's q/k/v projection is "
                                       "one module in GPT-2; target only that one.")
    n_layers = base.config.n_layer
    require(leaves["c_attn"] == n_layers, f"LoRA lands on {leaves['c_attn']} of the {n_layers} layers: "
                                          "target the module name in every layer.")
    problem = _layer_problem(model, rank, alpha)
    require(problem is None, problem or "")
    extra = sorted(n for n, p in model.named_parameters() if p.requires_grad and not is_lora_name(n))
    require(not extra, f"besides LoRA's A and B matrices, {len(extra)} tensor(s) would train (e.g. {extra[0] if extra else ''}"
                       "): put LoRA on the projection and nothing else (bias, modules_to_save).")
    return f"rank {rank} and scale {alpha}/{rank} in all {n_layers} layers, on the q/k/v projection only"


# ---------------------------------------------------------------------------------------- Q3
NER_NAMES = ("english_ner", "ner", "entities", "ner_en")
SPANISH_NAMES = ("spanish_sentiment", "sentiment_es", "es_reviews", "opiniones")


def two_adapters(learner: str) -> PeftModel:
    """Exercise 3 Q3: both shipped adapters on one base, under names a colleague chose (the learner's own)."""
    rng = _rng(learner_seed(learner), "q3")
    model = PeftModel.from_pretrained(load_base_model(), shipped_adapter("english_ner"),
                                      adapter_name=rng.choice(NER_NAMES))
    model.load_adapter(shipped_adapter("spanish_sentiment"), adapter_name=rng.choice(SPANISH_NAMES))
    return model


def _q3(ev: Evidence) -> str:
    """Lesson 3 (section 6, set_adapter with a wrong name): the Spanish adapter made active, the NER one kept."""
    model = peft_model(ev, "spanish_model")
    counts = dtype_counts(model.named_parameters())
    require(set(counts) == {"float32"}, f"the parameters of `spanish_model` are {counts}: it was given in float32; "
                                        "switching adapters needs no cast (lesson 4 is where dtypes change).")
    names = sorted(model.peft_config)
    ner = shipped_adapter("english_ner") / WEIGHTS_FILE
    require(any(holds_file(model, n, ner) for n in names),
            f"no adapter of the model ({names}) holds english_ner's weights: keep it loaded and switch.")
    now = active(model, "spanish_model")
    require(holds_file(model, now, shipped_adapter("spanish_sentiment") / WEIGHTS_FILE),
            f"the active adapter {now!r} does not hold the Spanish sentiment adapter's weights.")
    return f"{now!r} (the Spanish adapter) active, english_ner kept, " + same_logits(
        shipped("spanish_sentiment"), model, "the active adapter", atol=ROUND_TRIP_ATOL)


# ---------------------------------------------------------------------------------------- Q4
def sent_spec(seed: int) -> dict:
    """Q4's adapter as the colleague trained it, and which fault their hand edit put in the folder."""
    rng = _rng(seed, "q4")
    return {"rank": rng.choice((4, 8, 16)), "alpha": rng.choice((8, 16, 32)), "targets": rng.choice(TARGET_SETS),
            "fault": rng.choice(FAULTS)}


def _break(path: Path, spec: dict) -> None:
    config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    fault = spec["fault"]
    if fault == "rank":
        config["r"] = {4: 8, 8: 16, 16: 4}[spec["rank"]]
    elif fault == "targets":
        spare = next(m for m in ("c_proj", "c_fc", "c_attn") if m not in spec["targets"])
        config["target_modules"] = sorted([*spec["targets"][1:], spare])
    elif fault == "peft_type":
        config["peft_type"] = "LoRA"
    else:
        (path / WEIGHTS_FILE).rename(path / RENAMED)
    (path / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")


def broken_folder(target, learner: str) -> Path:
    """Exercise 3 Q4: a colleague's adapter folder after a hand edit; which edit broke it is the learner's own."""
    spec = sent_spec(learner_seed(learner))
    target = Path(target)
    shutil.rmtree(target, ignore_errors=True)
    _secret_adapter(spec["rank"], spec["alpha"], spec["targets"]).save_pretrained(str(target))
    _break(target, spec)
    return target


def try_loading(path) -> None:
    """Print what loading ``path`` with ``PeftModel.from_pretrained`` gives: the error, or the warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            PeftModel.from_pretrained(load_base_model(), str(path))
        except Exception as exc:  # noqa: BLE001 - whatever it raises is what the learner sees
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()][:2]
            print(f"{type(exc).__name__}: {' '.join(lines)[:300]}")
            return
    said = [str(w.message) for w in caught if "adapter keys" in str(w.message)]
    if not said:
        print("loaded without an error")
        return
    head, _, keys = said[0].partition(": [")
    listed = [k.strip(" '\"") for k in keys.rstrip("]").split(",") if k.strip()]
    print(f"loaded without an error, but peft warned: {head} ({len(listed)} keys, e.g. {listed[0]!r})")


def _same_files(current: Path, snap: Path) -> str | None:
    """What differs between a folder now and its snapshot (None when nothing does)."""
    now, then = list_files(current), list_files(snap)
    if set(now) != set(then):
        changed = sorted(set(now) ^ set(then))
        return f"its files are not the ones it was given ({', '.join(changed)})"
    for name in sorted(then):
        if (current / name).read_bytes() != (snap / name).read_bytes():
            return f"{name} was changed"
    return None


def _expected(snap: Path, spec: dict) -> PeftModel:
    """The colleague's model: the weights the folder was given with, under the config they were trained with."""
    files = sorted(snap.glob("*.safetensors"))
    require(len(files) == 1, "the course's record of `sent` has no weights file: run the notebook again.")
    config = LoraConfig(r=spec["rank"], lora_alpha=spec["alpha"], target_modules=list(spec["targets"]),
                        init_lora_weights=False)
    model = get_peft_model(load_base_model(), config)
    set_peft_model_state_dict(model, load_file(str(files[0])))
    return model.eval()


def _where(original: str | None) -> str | None:
    return os.path.normpath(os.path.abspath(original)) if isinstance(original, str) else None


def _sent_given(ev: Evidence) -> str | None:
    """Where the given cell made `sent`; fails when the answer `sent` names another folder (a rebound name)."""
    snap = ev.earlier(SENT_ID)
    given = _where(snap.original("sent")) if snap is not None else None
    require(given is None or not ev.has("sent") or _where(ev.original("sent")) == given,
            f"`sent` names {ev.original('sent')!r}, not the folder the given cell made: leave `sent` as given and "
            "repair a copy of it.")
    return given


def _q4(ev: Evidence) -> str:
    """Lesson 3 (section 7, diagnose): a folder broken by a hand edit the lesson did not show (a seeded fault:
    rank, target modules, peft type or the weights file's name), repaired in a copy that reloads to the colleague's
    model; the colleague's folder left as it was given."""
    spec = sent_spec(ev.seed)
    snap = _snapshot(ev, SENT_ID, "sent")
    if ev.has("sent"):
        changed = _same_files(folder(ev, "sent"), snap)
        require(changed is None, f"the colleague's folder `sent` was changed ({changed}): the task asks for a "
                                 "repaired copy; run the given cell again to restore it, then repair a copy.")
    sent_given = _sent_given(ev)
    path = folder(ev, "repaired")
    try:
        adapter_folder(path)
    except Wrong as exc:
        links = " (the check copies files, not links: a symbolic link is not followed)"
        raise Wrong(str(exc) + (links if "found adapter_model" in str(exc) else "")) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = reload(path)
    except Exception as exc:  # noqa: BLE001 - any load error is the learner's feedback
        raise Wrong(f"the folder still does not load: {type(exc).__name__}: {first_line(exc, 140)}") from None
    leaves = lora_leaf_names(model)
    require(set(leaves) == set(spec["targets"]), f"the reloaded adapter puts LoRA on {sorted(leaves)}, but the "
                                                 "weights file holds LoRA weights for other modules: peft loads "
                                                 "only what target_modules names (diagnose compares the two).")
    expected = _expected(snap, spec)
    require(holds(model, "default", weights_of(path)) and holds(model, "default", load_file(str(
        next(snap.glob("*.safetensors"))))), "the repaired folder does not hold the weights `sent` was given "
                                             "with: repair its files, keep its weights.")
    require(_where(ev.original("repaired")) != sent_given, "`repaired` is the colleague's folder `sent` itself: "
                                                           "the task asks for a repaired copy.")
    return "the repaired copy reloads, `sent` is unchanged, and " + same_logits(expected, model,
                                                                                "the repaired adapter")


QUESTIONS = (
    Question("ex03_q1", 2, ("fixed",), _q1, ("shared",)),
    Question("ex03_q2", 2, ("config",), _q2),
    Question("ex03_q3", 2, ("spanish_model",), _q3),
    Question("ex03_q4", 3, ("repaired",), _q4, ("sent",), folders=("sent",)),
)
