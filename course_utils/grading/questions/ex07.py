"""Exercise 7 (lesson 7, classification heads and Trainer checkpoints): given material and judges.
Q1's rank and alpha come from the learner's seed; Q2's run takes its shape from the seed and its weights from
``secrets``: the folder, snapshotted by ``record_given`` as the given cell ends, is the only copy."""
from __future__ import annotations

import json
import random
import secrets
import tempfile
from pathlib import Path, PurePath

import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from peft.tuners.lora import LoraLayer
from transformers import GPT2ForSequenceClassification

from ...adapter_format import is_lora_name
from ...assets import course_model
from ...learner import learner_seed
from ...messages import first_line
from ...models import load_base_model, load_tokenizer
from ..evidence import Evidence, type_name
from .common import (
    Question,
    Wrong,
    active,
    given_snapshot,
    holds,
    notebook_type,
    own_rng,
    peft_model,
    quiet_save,
    require,
    same_logits,
    secret_rng,
    train_looking,
    weights_of,
)

RUN_PROBES = 3   # unseen Trainer runs ``best_checkpoint`` is tried on
PROBE_STEPS = (2, 3, 4, 5, 20, 25, 50, 250, 500)   # their save steps


# ============================================================================ Q2: a classifier's config
def head_task(seed: int) -> tuple[int, int]:
    """Exercise 7 Q1: the rank and lora_alpha the learner's classifier adapter must use (from their seed)."""
    rng = random.Random(seed * 7 + 2)
    rank = rng.choice((4, 6, 12, 16))
    return rank, rank * rng.choice((1, 2, 3))


def classifier_task(learner=None) -> tuple[int, int]:
    """Exercise 7 Q1, the given cell: ``(rank, lora_alpha)`` for this learner."""
    return head_task(learner_seed(learner))


def _classifier(seed: int):
    torch.manual_seed(seed)  # a different random head on every build, as a fresh process would draw
    return GPT2ForSequenceClassification.from_pretrained(course_model(), num_labels=2,
                                                         pad_token_id=load_tokenizer().pad_token_id).eval()


def _layers_as_asked(model, config, rank: int, alpha: int) -> tuple[int, float, float]:
    """LoRA on c_attn of every layer, each with the rank and the lora_alpha the task sets (plain scale alpha/rank);
    returns what the layers really got: ``(rank, lora_alpha, scale)``."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, LoraLayer)]
    where = sorted({n.rsplit(".", 1)[-1] for n, _ in layers})
    require(where == ["c_attn"], f"`config` puts LoRA on {', '.join(where) or 'no module'}; the task asks for "
                                 "LoRA on c_attn only.")
    n_layer = model.config.n_layer
    require(len(layers) == n_layer, f"`config` puts LoRA on c_attn of {len(layers)} of the {n_layer} layers; the "
                                    "task asks for every layer.")
    require(not config.use_rslora, f"`config` turns on use_rslora, which scales the update by lora_alpha/√r: the "
                                   f"task asks for lora_alpha {alpha} at rank {rank} with the usual scale "
                                   "lora_alpha/r (lesson 7, 'Classification heads').")
    for name, module in layers:
        short = name.split("transformer.", 1)[-1]
        r, a = module.r.get("default"), module.lora_alpha.get("default")
        require(r == rank, f"{short} gets rank {r} (rank_pattern?); the task asks for rank {rank} in every layer.")
        require(not module.use_dora.get("default"), "`config` turns on DoRA: the task asks for plain LoRA.")
        require(a == alpha, f"{short} gets lora_alpha {a:g} (alpha_pattern?); the task asks for lora_alpha {alpha} "
                            "in every layer.")
    return r, a, float(module.scaling.get("default", 0.0))


def _reload_gap(model) -> float:
    x = dict(load_tokenizer()(["Reseña: La comida fue excelente.\nSentimiento:"], return_tensors="pt"))
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        back = PeftModel.from_pretrained(_classifier(1), tmp).eval()
        model.eval()   # lora_dropout is a right choice: compare predictions, not training-mode outputs
        with torch.no_grad():
            return float((model(**x).logits - back(**x).logits).abs().max())


def _cannot_run(exc: Exception, init) -> Wrong:
    hint = (f"init_lora_weights={init!r} does not fit GPT-2's Conv1D layers (fan_in_fan_out); the default "
            "initialisation does." if init not in (True, False, "gaussian") else "compare with `print(classifier())`.")
    return Wrong(f"the classifier with this config cannot compute ({type(exc).__name__}: {first_line(exc, 80)}): "
                 + hint)


def _q1(ev: Evidence) -> str:
    """Lesson 7, classification heads: a LoRA config for GPT2ForSequenceClassification, with the rank and alpha the given cell
    printed on c_attn of every layer, whose saved adapter carries its trained head."""
    rank, alpha = head_task(ev.seed)
    config = ev.value("config")
    notebook_type(config, "config")
    require(isinstance(config, LoraConfig), f"`config` is a {type_name(config)}, not a LoraConfig.")
    task = config.task_type
    require(task is None or (isinstance(task, str) and task == TaskType.SEQ_CLS),
            f"`config` has task_type {task!r}, which does not fit a sequence classifier.")
    model = get_peft_model(_classifier(0), config)
    r, a, scale = _layers_as_asked(model, config, rank, alpha)
    head = [n for n, p in model.named_parameters() if p.requires_grad and "score" in n]
    require(head, "with this config the classification head (`score`) is frozen: it would keep its random start "
                  "and would not be saved.")
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))  # stand-in for training: move every trainable weight
    try:
        gap = _reload_gap(model)
    except RuntimeError as exc:
        raise _cannot_run(exc, config.init_lora_weights) from None
    require(gap < 1e-5, f"after save and reload the predictions change (max |logit difference| {gap:.1e}): "
                        "the head's trained weights are not in the saved adapter.")
    return (f"every c_attn gets rank {r} and lora_alpha {a:g} (scale {scale:g}); head trained and saved; reload "
            f"reproduces the logits (max |difference| {gap:.1e})")


# ============================================================================ Q3: the best checkpoint of a run
def _plan(rng, steps: list[int], best: int, dip: int | None) -> dict:
    """A run's log: eval losses falling to the lowest at ``best`` (by a margin) and rising after it (with ``dip``: a
    local minimum there first, the loss rising once and falling lower again); training losses lowest at the end."""
    value, losses = rng.uniform(1.8, 2.2), []
    for i in range(len(steps)):
        falling = i <= best and (dip is None or i != dip + 1)
        value += -rng.uniform(0.05, 0.2) if falling else rng.uniform(0.02, 0.2)
        losses.append(round(value, 4))
    losses[best] = round(min(losses) - rng.uniform(0.01, 0.05), 4)
    train = [round(2.1 - 0.25 * i - rng.uniform(0, 0.05), 4) for i in range(len(steps))]
    return {"steps": steps, "eval_loss": losses, "loss": train, "best": best}


def run_plan(seed: int) -> dict:
    """Exercise 7 Q2: the learner's run from their seed (its best checkpoint is never the last)."""
    rng = random.Random(seed * 7 + 3)
    step, n = rng.choice((2, 3, 5, 50)), rng.randint(4, 6)
    best = rng.randint(1, n - 2)
    return _plan(rng, [step * (i + 1) for i in range(n)], best, rng.randrange(best - 1) if best > 1 else None)


def text_newest(steps: list[int]) -> int:
    """The index of the checkpoint that sorting the folder names as text puts last."""
    return max(range(len(steps)), key=lambda i: f"checkpoint-{steps[i]}")


def probe_plans(rng=None) -> list[dict]:
    """Exercise 7 Q2: the unseen runs ``best_checkpoint`` is tried on, drawn from ``secrets``. Each is noisy (a
    local minimum before the lowest eval loss), one ends on its best checkpoint, and in each the checkpoint that
    sorts last as text (checkpoint-5 after checkpoint-10) has a log that ends before the best."""
    rng = rng or secrets.SystemRandom()
    shapes = [(s, n) for s in PROBE_STEPS for n in range(5, 9)
              if text_newest([s * (i + 1) for i in range(n)]) <= n - 3]
    ends_best, plans = rng.randrange(RUN_PROBES), []
    for k in range(RUN_PROBES):
        step, n = rng.choice(shapes)
        steps = [step * (i + 1) for i in range(n)]
        best = n - 1 if k == ends_best else rng.randint(max(text_newest(steps) + 1, 2), n - 2)
        plans.append(_plan(rng, steps, best, rng.randint(0, best - 2)))
    return plans


def best_name(seed: int) -> str:
    return f"checkpoint-{run_plan(seed)['steps'][run_plan(seed)['best']]}"


def _trainer_state(plan: dict, upto: int) -> dict:
    history = [{"epoch": round(plan["steps"][i] / plan["steps"][-1], 4), key: plan[key][i], "step": plan["steps"][i]}
               for i in range(upto + 1) for key in ("loss", "eval_loss")]
    return {"best_metric": None, "best_model_checkpoint": None, "epoch": history[-1]["epoch"],
            "eval_steps": plan["steps"][0], "global_step": plan["steps"][upto], "log_history": history,
            "max_steps": plan["steps"][-1], "save_steps": plan["steps"][0]}


def write_run(target, plan: dict) -> Path:
    """The checkpoints of a Trainer run following ``plan`` (adapter and trainer_state.json; weights from secrets)."""
    target = Path(target)
    with secret_rng():
        model = get_peft_model(load_base_model(), LoraConfig(r=8, lora_alpha=16, target_modules=["c_attn"],
                                                             fan_in_fan_out=True, task_type="CAUSAL_LM"))
        for i, step in enumerate(plan["steps"]):
            train_looking(model)
            checkpoint = target / f"checkpoint-{step}"
            quiet_save(model, checkpoint)
            (checkpoint / "trainer_state.json").write_text(json.dumps(_trainer_state(plan, i), indent=2),
                                                           encoding="utf-8")
    return target


def trainer_run(target, learner=None) -> Path:
    """Exercise 7 Q2, the given cell: the learner's run (shape from their seed, weights from ``secrets``)."""
    return write_run(target, run_plan(learner_seed(learner)))


def _tried(find, run: Path) -> dict:
    try:
        got = find(run)
    except Exception as exc:  # noqa: BLE001 - what it raised is the evidence
        return {"raised": f"{type(exc).__name__}: {first_line(exc, 120)}"}
    if not isinstance(got, (str, PurePath)):
        return {"type": type(got).__name__}
    return {"name": Path(got).name, "inside": Path(got).resolve().parent == run.resolve()}


def _probe_q2(answers: dict) -> dict:
    """In the kernel: ``best_checkpoint`` tried on unseen runs (random folders, ``secrets`` logs, both recorded)."""
    find = answers.get("best_checkpoint")
    if not callable(find):
        return {}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, plan in enumerate(probe_plans(), 1):
            run = write_run(Path(tmp) / secrets.token_hex(6), plan)
            out[f"run{k}"] = {"steps": plan["steps"], "eval_loss": plan["eval_loss"], "loss": plan["loss"],
                              **_tried(find, run)}
    return out


def _mistakes(steps: list, losses: list, train: list) -> list[tuple[int, str]]:
    """The checkpoint each usual mistake picks on a run, and what to say about it."""
    n, tm = len(steps), text_newest(steps)
    rise = next((i for i in range(n - 1) if losses[i + 1] > losses[i]), n - 1)
    return [(n - 1, "the last checkpoint; its eval loss is not the lowest (read the log in trainer_state.json)"),
            (min(range(tm + 1), key=losses.__getitem__), f"the lowest in the log of checkpoint-{steps[tm]}, which "
             "sorts last as text but is not the newest (checkpoint-10 sorts before checkpoint-5 as text)"),
            (min(range(n), key=train.__getitem__), "the lowest training loss (`loss`); the task asks for eval_loss"),
            (rise, "where the eval loss first rises; it falls lower again later: read the whole log"),
            (min(range(n - 1), key=losses.__getitem__), "the lowest before the last; here the last is the best")]


def _judge_run(run: dict) -> None:
    require("raised" not in run, f"on another run, `best_checkpoint` raised {run.get('raised')}.")
    require("type" not in run, f"`best_checkpoint` should return the checkpoint's path, not a {run.get('type')}.")
    steps, losses, train = run.get("steps"), run.get("eval_loss"), run.get("loss")
    require(all(isinstance(v, list) for v in (steps, losses, train)) and len(steps) == len(losses) == len(train)
            > 0, "the check's trial runs were not recorded: run the check cell as given.")
    best, got = losses.index(min(losses)), run.get("name")
    if got != f"checkpoint-{steps[best]}":
        hints = [why for i, why in _mistakes(steps, losses, train) if i != best and got == f"checkpoint-{steps[i]}"]
        raise Wrong(f"on another run, `best_checkpoint` returns {got!r}: "
                    f"{'; or '.join(hints) or 'not the checkpoint with the lowest eval_loss in the log'}.")
    require(run.get("inside") is True, f"on another run, `best_checkpoint` returns a path to {got} outside the run "
                                       "folder it was given: return the checkpoint's path inside that folder.")


def _function_finds_best(ev: Evidence) -> None:
    given = ev.value("best_checkpoint")
    notebook_type(given, "best_checkpoint")
    require(getattr(given, "function", False), f"`best_checkpoint` should be a function of a run folder, not a "
                                               f"{type_name(given)}: the check runs it on other runs.")
    runs = [ev.probe(f"run{k}") for k in range(1, RUN_PROBES + 1)]
    require(all(isinstance(r, dict) for r in runs), "`best_checkpoint` was not tried: define it, then run the check.")
    for run in runs:
        _judge_run(run)


def _trainable_lora(model, adapter: str) -> int:
    """The LoRA tensors of the active adapter all trainable, no base weight trainable (other adapters aside)."""
    lora = [p for n, p in model.named_parameters() if is_lora_name(n) and f".{adapter}." in n]
    n_lora = sum(p.requires_grad for p in lora)
    require(n_lora == len(lora) and n_lora > 0, f"{len(lora) - n_lora} of the {len(lora)} LoRA tensors of the "
                                                f"active adapter of `continued` ('{adapter}') are frozen: it could "
                                                "not continue training.")
    n_base = sum(p.requires_grad for n, p in model.named_parameters() if not is_lora_name(n))
    require(n_base == 0, f"{n_base} base-model parameters of `continued` require grad: training changes the base.")
    return n_lora


def _q2(ev: Evidence) -> str:
    """Lesson 7, Trainer checkpoints: the best checkpoint of a Trainer run (lowest eval loss, not the last), found by a
    function that works on any run, and loaded to continue training, not wrapped again with get_peft_model."""
    _function_finds_best(ev)
    run = given_snapshot(ev, "ex07_given_trainer", "run")
    want = best_name(ev.seed)
    require((run / want).is_dir() and len(list(run.glob("checkpoint-*"))) == len(run_plan(ev.seed)["steps"]),
            "the folder `run` was made for another learner: run the notebook from its first cell.")
    model = peft_model(ev, "continued")
    adapter = active(model, "continued")
    found = next((c.name for c in sorted(run.glob("checkpoint-*")) if holds(model, adapter, weights_of(c))), None)
    if found is None:
        zero = all(not p.any() for n, p in model.named_parameters() if is_lora_name(n, "B"))
        raise Wrong("`continued` holds a fresh adapter (its lora_B are zero), not a checkpoint's: the trained "
                    "weights were thrown away (lesson 7, 'Trainer checkpoints')." if zero else
                    "`continued` does not hold the weights of any checkpoint in `run`: load it from there.")
    require(found == want, f"`continued` holds {found}, not the checkpoint with the lowest eval loss.")
    n_lora = _trainable_lora(model, adapter)
    reference = PeftModel.from_pretrained(load_base_model(), str(run / want))
    return f"{want} (the best, not the last), {n_lora} LoRA tensors trainable, " + same_logits(
        reference, model, "`continued`")


QUESTIONS = (
    Question("ex07_q1", 2, ("config",), own_rng(_q1)),
    Question("ex07_q2", 2, ("best_checkpoint", "continued"), own_rng(_q2), (), _probe_q2),
)
