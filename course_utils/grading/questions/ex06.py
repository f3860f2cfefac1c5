"""Exercise 6 (lesson 6, new tokens, classification heads, Trainer checkpoints): given material and judges.

Every given folder is made from the learner's seed (its shape: how many tokens were added, the rank to use, how
many checkpoints and which is best), and its weights from ``secrets``: the folder, snapshotted by
``record_given`` as the given cell ends, is the only copy, so a model that holds those weights was loaded from it.
"""
from __future__ import annotations

import json
import math
import random
import secrets
import tempfile
import warnings
from contextlib import contextmanager
from functools import wraps
from pathlib import Path, PurePath

import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model, get_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from transformers import AutoTokenizer, GPT2ForSequenceClassification

from ...assets import course_model
from ...learner import learner_seed
from ...messages import first_line
from ...models import load_base_model, load_tokenizer
from ..evidence import Evidence, type_name
from .common import Question, Wrong, active, holds, notebook_type, peft_model, require, same_logits, weights_of

TAGS = ("ent", "per", "loc", "org", "date", "misc")
RUN_PROBES = 3   # unseen Trainer runs ``best_checkpoint`` is tried on


@contextmanager
def secret_rng():
    """torch's RNG seeded from ``secrets`` inside the block; the learner's RNG state is as it was after it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(secrets.randbits(63))
        yield


def _train_looking(model) -> None:
    """Move every trainable tensor of ``model`` at random, as training would (call inside ``secret_rng``)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * (0.05 if "lora_" in name else 0.02))


def own_rng(judge):
    """``judge`` run with a torch RNG of its own: a self-check in the learner's kernel leaves theirs as it was."""
    @wraps(judge)
    def judged(ev: Evidence) -> str:
        with torch.random.fork_rng(devices=[]):
            return judge(ev)
    return judged


def quiet_save(model, target) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(str(target))


# ============================================================================ Q1: an adapter trained with new tokens
def entity_tokens(seed: int) -> list[str]:
    """Exercise 6 Q1: the tokens the colleague added (one to three pairs of tags, from the learner's seed)."""
    rng = random.Random(seed * 7 + 6)
    return [t for tag in rng.sample(TAGS, rng.randint(1, 3)) for t in (f"<{tag}>", f"</{tag}>")]


def entity_colleague(target, learner=None) -> Path:
    """Exercise 6 Q1: a colleague's adapter trained with added tokens (``wte`` saved whole), saved with their
    tokenizer into ``target``. Its weights are drawn from ``secrets``: this folder is their only copy."""
    target = Path(target)
    tok = load_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": entity_tokens(learner_seed(learner))})
    with secret_rng():
        base = load_base_model()
        base.resize_token_embeddings(len(tok), mean_resizing=False)  # random new rows: only this folder has them
        model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["c_attn"], fan_in_fan_out=True,
                                                modules_to_save=["wte"]))
        _train_looking(model)
    quiet_save(model, target)
    tok.save_pretrained(str(target))
    return target


def given_snapshot(ev: Evidence, given_id: str, name: str) -> Path:
    """The snapshot of folder ``name`` that the given cell ``given_id`` recorded as it ended."""
    snap = ev.earlier(given_id)
    require(snap is not None and snap.has(name), f"the given cell `{given_id}` did not run in this notebook: run "
                                                 "the notebook from its first cell.")
    path = snap.value(name)
    require(isinstance(path, Path) and path.is_dir(), f"the given cell `{given_id}` saved nothing: run the "
                                                      "notebook from its first cell.")
    return path


def _entity_reference(path: Path):
    """The checker's own load of the snapshot: base resized to the shipped tokenizer, adapter loaded."""
    tok = AutoTokenizer.from_pretrained(str(path))
    base = load_base_model()
    base.resize_token_embeddings(len(tok), mean_resizing=False)   # the folder's rows replace the new ones
    return PeftModel.from_pretrained(base, str(path)).eval(), tok


def _same_adapter(model, adapter: str, reference) -> bool:
    """Whether ``model``'s adapter and embedding hold exactly the reference's tensors (the names of adapters aside)."""
    mine = get_peft_model_state_dict(model, adapter_name=adapter, save_embedding_layers=False)
    theirs = get_peft_model_state_dict(reference, save_embedding_layers=False)
    return set(mine) == set(theirs) and all(torch.equal(mine[k].float(), theirs[k].float()) for k in theirs) and \
        torch.equal(model.get_output_embeddings().weight.float(), reference.get_output_embeddings().weight.float())


def _q1(ev: Evidence) -> str:
    """Lesson 6, section 1: an adapter trained with added tokens, loaded from its folder onto a base resized to the
    tokenizer shipped with it (the folder holds the only copy of its weights)."""
    path = given_snapshot(ev, "ex06_given_tokens", "shared")
    reference, tok = _entity_reference(path)
    added = tok.convert_ids_to_tokens(list(range(len(load_tokenizer()), len(tok))))
    require(added == entity_tokens(ev.seed), "the folder `shared` was made for "
            "another learner: run the notebook from its first cell.")
    model = peft_model(ev, "fixed")
    rows = model.get_input_embeddings().weight.shape[0]
    require(rows == len(tok), f"`fixed` has an embedding of {rows} rows; the tokenizer shipped in `shared` has "
                              f"{len(tok)} tokens (lesson 6, section 1: resize the base first).")
    adapter = active(model, "fixed")
    require(_same_adapter(model, adapter, reference), "the active adapter of `fixed` does not hold the weights saved "
                                                      "in `shared` (with the trained embedding rows): load it from "
                                                      "that folder.")
    text = " ".join(f"{t} Maria" for t in added) + " works in Paris."
    batch = dict(tok([text], return_tensors="pt"))
    return f"{rows}-token vocabulary, " + same_logits(reference, model, "`fixed`", batch=batch)


# ============================================================================ Q2: a classifier's config
def head_task(seed: int) -> tuple[int, int]:
    """Exercise 6 Q2: the rank and lora_alpha the learner's classifier adapter must use (from their seed)."""
    rng = random.Random(seed * 7 + 2)
    rank = rng.choice((4, 6, 12, 16))
    return rank, rank * rng.choice((1, 2, 3))


def classifier_task(learner=None) -> tuple[int, int]:
    """Exercise 6 Q2, the given cell: ``(rank, lora_alpha)`` for this learner."""
    return head_task(learner_seed(learner))


def _classifier(seed: int):
    torch.manual_seed(seed)  # a different random head on every build, as a fresh process would draw
    tok = load_tokenizer()
    return GPT2ForSequenceClassification.from_pretrained(course_model(), num_labels=2,
                                                         pad_token_id=tok.pad_token_id).eval()


def _layers_as_asked(model, rank: int, alpha: int) -> None:
    """LoRA on c_attn of every layer, each with the rank and the scale (alpha / rank) the task sets."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, LoraLayer)]
    where = sorted({n.rsplit(".", 1)[-1] for n, _ in layers})
    require(where == ["c_attn"], f"`config` puts LoRA on {', '.join(where) or 'no module'}; the task asks for "
                                 "LoRA on c_attn only.")
    n_layer = model.config.n_layer
    require(len(layers) == n_layer, f"`config` puts LoRA on c_attn of {len(layers)} of the {n_layer} layers; the "
                                    "task asks for every layer.")
    for name, module in layers:
        short = name.split("transformer.", 1)[-1]
        r = module.r.get("default")
        require(r == rank, f"{short} gets rank {r} (rank_pattern?); the task asks for rank {rank} in every layer.")
        require(not module.use_dora.get("default"), "`config` turns on DoRA: the task asks for plain LoRA.")
        scale = float(module.scaling.get("default", 0.0))
        require(math.isclose(scale, alpha / rank, rel_tol=1e-6),
                f"{short} scales its update by {scale:g}; lora_alpha={alpha} at rank {rank} scales it by "
                f"{alpha / rank:g} (check lora_alpha, alpha_pattern and use_rslora).")


def _reload_gap(model) -> float:
    x = dict(load_tokenizer()(["Reseña: La comida fue excelente.\nSentimiento:"], return_tensors="pt"))
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        back = PeftModel.from_pretrained(_classifier(1), tmp).eval()
        model.eval()   # lora_dropout is a right choice: compare predictions, not training-mode outputs
        with torch.no_grad():
            return float((model(**x).logits - back(**x).logits).abs().max())


def _q2(ev: Evidence) -> str:
    """Lesson 6, section 2: a LoRA config for GPT2ForSequenceClassification, with the rank and alpha the given cell
    printed on c_attn of every layer, whose saved adapter carries its trained head."""
    rank, alpha = head_task(ev.seed)
    config = ev.value("config")
    notebook_type(config, "config")
    require(isinstance(config, LoraConfig), f"`config` is a {type_name(config)}, not a LoraConfig.")
    task = config.task_type
    require(task is None or (isinstance(task, str) and task == TaskType.SEQ_CLS),
            f"`config` has task_type {task!r}, which does not fit a sequence classifier.")
    model = get_peft_model(_classifier(0), config)
    _layers_as_asked(model, rank, alpha)
    head = [n for n, p in model.named_parameters() if p.requires_grad and "score" in n]
    require(head, "with this config the classification head (`score`) is frozen: it would keep its random start "
                  "and would not be saved.")
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))  # stand-in for training: move every trainable weight
    gap = _reload_gap(model)
    require(gap < 1e-5, f"after save and reload the predictions change (max |logit difference| {gap:.1e}): "
                        "the head's trained weights are not in the saved adapter.")
    return (f"rank {rank}, lora_alpha {alpha} on c_attn of every layer; head trained and saved; reload reproduces "
            f"the logits (max |difference| {gap:.1e})")


# ============================================================================ Q3: the best checkpoint of a run
def run_plan(seed: int) -> dict:
    """Exercise 6 Q3: a Trainer run's shape from ``seed``: checkpoint steps, eval losses (the best one is never
    the last), training losses (lowest at the end: the wrong column to choose by)."""
    rng = random.Random(seed * 7 + 3)
    step, n = rng.choice((2, 3, 5, 50)), rng.randint(3, 5)
    best = rng.randrange(n - 1)
    losses = [round(2.0 - 0.15 * i - rng.uniform(0, 0.1) if i <= best else 0.0, 4) for i in range(n)]
    for i in range(best + 1, n):
        losses[i] = round(losses[i - 1] + rng.uniform(0.02, 0.2), 4)
    losses[best] = round(min(losses) - 0.01, 4)
    train = [round(2.1 - 0.25 * i, 4) for i in range(n)]
    return {"steps": [step * (i + 1) for i in range(n)], "eval_loss": losses, "loss": train, "best": best}


def best_name(seed: int) -> str:
    plan = run_plan(seed)
    return f"checkpoint-{plan['steps'][plan['best']]}"


def _trainer_state(plan: dict, upto: int) -> dict:
    history = []
    for i in range(upto + 1):
        step = plan["steps"][i]
        history.append({"epoch": round(step / plan["steps"][-1], 4), "loss": plan["loss"][i], "step": step})
        history.append({"epoch": round(step / plan["steps"][-1], 4), "eval_loss": plan["eval_loss"][i],
                        "step": step})
    return {"best_metric": None, "best_model_checkpoint": None, "epoch": history[-1]["epoch"],
            "eval_steps": plan["steps"][0], "global_step": plan["steps"][upto], "log_history": history,
            "max_steps": plan["steps"][-1], "save_steps": plan["steps"][0]}


def trainer_run(target, learner=None, seed: int | None = None) -> Path:
    """Exercise 6 Q3: the checkpoints a Trainer run wrote into ``target`` (each: the adapter and the
    ``trainer_state.json`` with the run's log so far; no optimizer state, to stay small). The shape comes from
    the learner's seed (or ``seed``); the weights from ``secrets``, so only these folders hold them."""
    target = Path(target)
    plan = run_plan(learner_seed(learner) if seed is None else seed)
    with secret_rng():
        model = get_peft_model(load_base_model(), LoraConfig(r=8, lora_alpha=16, target_modules=["c_attn"],
                                                             fan_in_fan_out=True, task_type="CAUSAL_LM"))
        for i, step in enumerate(plan["steps"]):
            _train_looking(model)
            checkpoint = target / f"checkpoint-{step}"
            quiet_save(model, checkpoint)
            (checkpoint / "trainer_state.json").write_text(json.dumps(_trainer_state(plan, i), indent=2),
                                                           encoding="utf-8")
    return target


def _probe_q3(answers: dict) -> dict:
    """In the learner's kernel: ``best_checkpoint`` run on Trainer runs it never saw (seeds after the learner's)."""
    find = answers.get("best_checkpoint")
    if not callable(find):
        return {}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(1, RUN_PROBES + 1):
            run = trainer_run(Path(tmp) / f"run{k}", seed=learner_seed() + k)
            try:
                got = find(run)
            except Exception as exc:  # noqa: BLE001 - what it raised is the evidence
                out[f"run{k}"] = {"raised": f"{type(exc).__name__}: {first_line(exc, 120)}"}
                continue
            out[f"run{k}"] = Path(got).name if isinstance(got, (str, PurePath)) else {"type": type(got).__name__}
    return out


def _function_finds_best(ev: Evidence) -> None:
    given = ev.value("best_checkpoint")
    notebook_type(given, "best_checkpoint")
    require(getattr(given, "function", False), f"`best_checkpoint` should be a function of a run folder, not a "
                                               f"{type_name(given)}: the check runs it on other runs.")
    for k in range(1, RUN_PROBES + 1):
        got = ev.probe(f"run{k}")
        require(got is not None, "`best_checkpoint` was not tried: define it, run its cell, then the check again.")
        if isinstance(got, dict):
            require("raised" not in got, f"on another run, `best_checkpoint` raised {got.get('raised')}.")
            raise Wrong(f"`best_checkpoint` should return the checkpoint's path, not a {got.get('type')}.")
        plan, want = run_plan(ev.seed + k), best_name(ev.seed + k)
        last = f"checkpoint-{plan['steps'][-1]}"
        require(got != last, f"on another run, `best_checkpoint` returns {got}, the last checkpoint; its eval loss "
                             "is not the lowest (read the log the Trainer keeps in trainer_state.json).")
        require(got == want, f"on another run, `best_checkpoint` returns {got!r}, not the checkpoint with the "
                             "lowest eval loss (eval_loss, not the training loss; read the newest checkpoint's "
                             "log: checkpoint-10 sorts before checkpoint-5 as text).")


def _which_checkpoint(model, adapter: str, run: Path) -> str | None:
    for checkpoint in sorted(run.glob("checkpoint-*")):
        if holds(model, adapter, weights_of(checkpoint)):
            return checkpoint.name
    return None


def _trainable_lora(model) -> int:
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    n_lora = sum(p.requires_grad for p in lora)
    require(n_lora == len(lora) and n_lora > 0, f"{len(lora) - n_lora} of the {len(lora)} LoRA tensors of "
                                                "`continued` are frozen: it could not continue training.")
    n_base = sum(p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)
    require(n_base == 0, f"{n_base} base-model parameters of `continued` require grad: training would change the "
                         "base.")
    return n_lora


def _q3(ev: Evidence) -> str:
    """Lesson 6, section 3: the best checkpoint of a Trainer run (lowest eval loss, not the last), found by a
    function that works on any run, and loaded to continue training, not wrapped again with get_peft_model."""
    _function_finds_best(ev)
    run = given_snapshot(ev, "ex06_given_trainer", "run")
    want = best_name(ev.seed)
    require((run / want).is_dir() and len(list(run.glob("checkpoint-*"))) == len(run_plan(ev.seed)["steps"]),
            "the folder `run` was made for another learner: run the notebook from its first cell.")
    model = peft_model(ev, "continued")
    adapter = active(model, "continued")
    found = _which_checkpoint(model, adapter, run)
    if found is None:
        zero = all(not p.any() for n, p in model.named_parameters() if "lora_B" in n)
        raise Wrong("`continued` holds a fresh adapter (its lora_B are zero), not a checkpoint's: the trained "
                    "weights were thrown away (lesson 6, section 3)." if zero else
                    "`continued` does not hold the weights of any checkpoint in `run`: load it from there.")
    require(found == want, f"`continued` holds {found}, not the checkpoint with the lowest eval loss.")
    n_lora = _trainable_lora(model)
    reference = PeftModel.from_pretrained(load_base_model(), str(run / want))
    return f"{want} (the best, not the last), {n_lora} LoRA tensors trainable, " + same_logits(
        reference, model, "`continued`")


QUESTIONS = (
    Question("ex06_q1", 2, ("fixed",), own_rng(_q1)),
    Question("ex06_q2", 2, ("config",), own_rng(_q2)),
    Question("ex06_q3", 2, ("best_checkpoint", "continued"), own_rng(_q3), (), _probe_q3),
)
