"""Exercise 7 (classification heads, Trainer checkpoints): its checks accept right answers, and reject wrong ones
with feedback that says what is wrong. The given run is made by the exercise's own recipe (seeded shape, secret
weights) and snapshotted with ``record_given`` as the notebook's given cell does."""
from __future__ import annotations

import json
import logging
import math
import os
import random
from pathlib import Path

import pytest
import torch
import transformers
from check_assertions import AlwaysEqual, fails, passes
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from transformers import GPT2ForSequenceClassification

from course_utils import course_model, load_base_model
from course_utils.grading.checks import check
from course_utils.grading.evidence import record_given
from course_utils.grading.questions.ex07 import (
    _classifier,
    best_name,
    classifier_task,
    probe_plans,
    run_plan,
    text_newest,
    trainer_run,
)
from course_utils.learner import learner_seed

RANK, ALPHA = classifier_task("ci")


def seq_cls(**extra):
    return LoraConfig(**{"r": RANK, "lora_alpha": ALPHA, "target_modules": ["c_attn"], "fan_in_fan_out": True,
                         **extra})


@pytest.mark.parametrize("config", [
    seq_cls(task_type="SEQ_CLS"),
    seq_cls(modules_to_save=["score"]),
    seq_cls(task_type=TaskType.SEQ_CLS, target_modules=r".*\.c_attn"),
    seq_cls(task_type="SEQ_CLS", rank_pattern={"c_attn": RANK}, lora_dropout=0.1),
    seq_cls(task_type="SEQ_CLS", lora_alpha=1, alpha_pattern={"c_attn": ALPHA}),   # every c_attn still gets ALPHA
    seq_cls(task_type="SEQ_CLS", layers_to_transform=[0, 1, 2, 3], layers_pattern="h"),
    seq_cls(task_type="SEQ_CLS", target_modules=[f"transformer.h.{i}.attn.c_attn" for i in range(4)]),
])
def test_ex07_q1_configs_that_keep_the_head(config, capsys):
    passes("ex07_q1", capsys, config=config)


def test_ex07_q1_the_pass_line_reports_what_the_layers_got(capsys):
    check("ex07_q1", config=seq_cls(task_type="SEQ_CLS"))
    assert f"every c_attn gets rank {RANK} and lora_alpha {ALPHA} (scale {ALPHA / RANK:g})" in capsys.readouterr().out


@pytest.mark.parametrize(("config", "pattern"), [
    (seq_cls(), r"head \(`score`\) is frozen"),
    ({"task_type": "SEQ_CLS"}, "not a LoraConfig"),
    (seq_cls(task_type="CAUSAL_LM"), "task_type 'CAUSAL_LM', which does not fit a sequence classifier"),
    (seq_cls(modules_to_save=["classifier"]), r"head \(`score`\) is frozen"),
    (seq_cls(task_type="SEQ_CLS", inference_mode=True), r"head \(`score`\) is frozen"),
    (seq_cls(task_type="SEQ_CLS", r=8, lora_alpha=16), f"rank 8 .*asks for rank {RANK}"),   # the lesson's numbers
    (seq_cls(task_type="SEQ_CLS", lora_alpha=8), f"gets lora_alpha 8 .*asks for lora_alpha {ALPHA}"),
    (seq_cls(task_type="SEQ_CLS", lora_alpha=0), "gets lora_alpha 0 "),
    (seq_cls(task_type="SEQ_CLS", use_rslora=True), f"use_rslora, .* asks for lora_alpha {ALPHA} at rank {RANK}"),
    (seq_cls(task_type="SEQ_CLS", use_rslora=True, lora_alpha=ALPHA / math.sqrt(RANK)), "turns on use_rslora"),
    (seq_cls(task_type="SEQ_CLS", init_lora_weights="olora"), "cannot compute .*init_lora_weights='olora' does not"),
    (seq_cls(task_type="SEQ_CLS", rank_pattern={"h.0.attn.c_attn": 2}), r"h\.0\.attn\.c_attn gets rank 2"),
    (seq_cls(task_type="SEQ_CLS", rank_pattern={"c_attn": 16}), "gets rank 16"),
    (seq_cls(task_type="SEQ_CLS", alpha_pattern={"h.3.attn.c_attn": 1}), r"h\.3\.attn\.c_attn gets lora_alpha 1"),
    (seq_cls(task_type="SEQ_CLS", layers_to_transform=[0]), "c_attn of 1 of the 4 layers"),
    (seq_cls(task_type="SEQ_CLS", use_dora=True), "DoRA"),
    (seq_cls(target_modules=["c_attn", "score"]), "LoRA on c_attn, score;"),
    (seq_cls(task_type="SEQ_CLS", target_modules=["c_proj"]), "LoRA on c_proj;"),
    (AlwaysEqual(), "not a LoraConfig"),
])
def test_ex07_q1_configs_that_lose_the_head_or_miss_the_task(config, pattern):
    fails("ex07_q1", pattern, config=config)


def test_ex07_q1_another_learners_numbers_fail(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_LEARNER", "bob")
    rank, alpha = classifier_task("bob")
    assert (rank, alpha) != (RANK, ALPHA)
    fails("ex07_q1", "rank|lora_alpha", config=seq_cls(task_type="SEQ_CLS"))
    passes("ex07_q1", capsys, config=seq_cls(task_type="SEQ_CLS", r=rank, lora_alpha=alpha))


def test_ex07_q1_leaves_the_load_report_visible(capsys):
    transformers.logging.set_verbosity_warning()
    before = (transformers.logging.get_verbosity(), logging.getLogger("transformers").level)
    passes("ex07_q1", capsys, config=seq_cls(task_type="SEQ_CLS"))
    assert (transformers.logging.get_verbosity(), logging.getLogger("transformers").level) == before


def test_ex07_q1_self_check_leaves_the_learners_rng_alone(capsys):
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    passes("ex07_q1", capsys, config=seq_cls(task_type="SEQ_CLS"))
    assert torch.equal(torch.rand(3), want)


def test_a_classifier_check_builds_a_new_random_head_each_time():
    a, b = _classifier(0).score.weight, _classifier(1).score.weight
    assert not torch.equal(a, b)
    assert isinstance(_classifier(0), GPT2ForSequenceClassification) and course_model()



# ---------------------------------------------------------------------------- Q2
def _log(checkpoint):
    return json.loads((Path(checkpoint) / "trainer_state.json").read_text())["log_history"]


def _newest(run):
    return max(Path(run).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))


def _lowest(log, key="eval_loss"):
    return min((h for h in log if key in h), key=lambda h: h[key])["step"]


def best_checkpoint(run):
    """The right answer: the newest checkpoint's log, lowest eval_loss."""
    return Path(run) / f"checkpoint-{_lowest(_log(_newest(run)))}"


def as_str(run):
    """Also right: the same path as a str, from TrainerState."""
    state = transformers.TrainerState.load_from_json(str(_newest(run) / "trainer_state.json"))
    return os.path.join(run, f"checkpoint-{_lowest(state.log_history)}")


def each_own_log(run):
    """Also right: each checkpoint's own last eval_loss, the lowest of them."""
    return min(Path(run).glob("checkpoint-*"), key=lambda p: [h for h in _log(p) if "eval_loss" in h][-1]["eval_loss"])


def as_text(run):   # the newest checkpoint chosen by sorting names as text
    return str(Path(run) / f"checkpoint-{_lowest(_log(sorted(Path(run).glob('checkpoint-*'))[-1]))}")


def by_training_loss(run):
    return f"{run}/checkpoint-{_lowest(_log(_newest(run)), 'loss')}"


def first_rise(run):   # early stopping: the checkpoint before the eval loss first rises
    evals = [h for h in _log(_newest(run)) if "eval_loss" in h]
    stop = next((a for a, b in zip(evals, evals[1:]) if b["eval_loss"] > a["eval_loss"]), evals[-1])
    return Path(run) / f"checkpoint-{stop['step']}"


def not_the_last(run):   # "the last is never the best"
    return Path(run) / f"checkpoint-{_lowest(_log(_newest(run))[:-2])}"


def second_newest(run):
    return sorted(Path(run).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-2]


def the_last(run):
    return _newest(run)


def hard_coded(run):
    return Path(run) / best_name(learner_seed("ci"))


def from_the_seed(run):   # the course's recipe, keyed on the learner's seed: the trial runs are not seeded
    return Path(run) / best_name(learner_seed() + 1)


def elsewhere(run):   # the right name, in another folder
    return Path("/nonexistent") / best_checkpoint(run).name


def bare_name(run):
    return best_checkpoint(run).name


def breaks(run):
    raise KeyError("best_model_checkpoint")


def _mistake(plan, bug):
    """The index each mistake picks on a plan (without files)."""
    loss, n = plan["eval_loss"], len(plan["steps"])
    upto = lambda i: min(range(i + 1), key=loss.__getitem__)   # noqa: E731
    return {"text": upto(text_newest(plan["steps"])), "last": n - 1, "second": n - 2, "first": 0,
            "rise": next((i for i in range(n - 1) if loss[i + 1] > loss[i]), n - 1), "not_last": upto(n - 2),
            "train": plan["loss"].index(min(plan["loss"]))}[bug]


@pytest.mark.parametrize("bug", ["text", "last", "second", "first", "rise", "not_last", "train"])
def test_ex07_q2_every_draw_of_trial_runs_catches_the_usual_mistakes(bug):
    rng = random.Random(bug)
    for _ in range(3000):
        plans = probe_plans(rng)
        assert any(_mistake(p, bug) != p["best"] for p in plans)
        assert any(p["best"] == len(p["steps"]) - 1 for p in plans)   # one run ends on its best
        for p in plans:   # noisy: a local minimum before the best; a text sort misses the best
            assert _mistake(p, "rise") < p["best"] and text_newest(p["steps"]) < p["best"]
            assert p["eval_loss"].count(min(p["eval_loss"])) == 1 and min(p["eval_loss"]) == p["eval_loss"][p["best"]]


def test_ex07_q2_trial_runs_come_from_secrets_not_the_seed():
    assert probe_plans() != probe_plans()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return trainer_run(root / "run", "ci"), trainer_run(root / "again", "ci")


@pytest.fixture()
def run(runs):
    record_given("ex07_given_trainer", run=runs[0])
    return runs[0]


def ckpt(run, name=None, **kwargs):
    return PeftModel.from_pretrained(load_base_model(), Path(run) / (name or best_name(learner_seed("ci"))), **kwargs)


def test_ex07_q2_the_learners_best_checkpoint_is_never_the_last():
    for seed in range(500):
        plan = run_plan(seed)
        assert plan["best"] < len(plan["steps"]) - 1
        assert min(plan["eval_loss"]) == plan["eval_loss"][plan["best"]]
        assert plan["eval_loss"].count(min(plan["eval_loss"])) == 1


def _second_adapter(run):
    """The last checkpoint loaded as given, the best as a second, trainable adapter made active."""
    model = PeftModel.from_pretrained(load_base_model(), _newest(run))
    model.load_adapter(str(best_checkpoint(run)), adapter_name="best", is_trainable=True)
    model.set_adapter("best")
    return model


@pytest.mark.parametrize(("find", "make"), [
    (best_checkpoint, lambda r: ckpt(r, is_trainable=True)),
    (as_str, lambda r: ckpt(r, is_trainable=True, adapter_name="go")),
    (each_own_log, lambda r: ckpt(r, is_trainable=True).train()),
    (best_checkpoint, lambda r: _second_adapter(r)),   # the unused `default` stays frozen: right
])
def test_ex07_q2_right_answers(find, make, run, capsys):
    passes("ex07_q2", capsys, best_checkpoint=find, continued=make(run))


def test_ex07_q2_lora_thawed_by_hand_passes(run, capsys):
    thawed = ckpt(run)
    for name, p in thawed.named_parameters():
        p.requires_grad_("lora_" in name)
    passes("ex07_q2", capsys, best_checkpoint=best_checkpoint, continued=thawed)


def _rewrapped(run):
    with pytest.warns(UserWarning, match="second time"):
        return get_peft_model(ckpt(run).base_model.model, LoraConfig(r=8, target_modules=["c_attn"],
                                                                    fan_in_fan_out=True))


def _thawed_base(run):
    model = ckpt(run, is_trainable=True)
    model.base_model.model.transformer.wte.weight.requires_grad_(True)
    return model


def _frozen_second(run):
    model = _second_adapter(run)
    for name, p in model.named_parameters():
        p.requires_grad_(".default." in name)   # the unused adapter trainable, the active one frozen
    return model


LAST = f"checkpoint-{run_plan(learner_seed('ci'))['steps'][-1]}"
WRONG_Q3 = [
    (as_text, lambda r, a: ckpt(r, is_trainable=True), "sorts last as text but is not the newest"),
    (by_training_loss, lambda r, a: ckpt(r, is_trainable=True), "the last checkpoint|the lowest training loss"),
    (first_rise, lambda r, a: ckpt(r, is_trainable=True), "where the eval loss first rises"),
    (not_the_last, lambda r, a: ckpt(r, is_trainable=True), "the lowest before the last; here the last is the best"),
    (second_newest, lambda r, a: ckpt(r, is_trainable=True), "on another run, `best_checkpoint` returns 'checkpoint"),
    (the_last, lambda r, a: ckpt(r, is_trainable=True), "the last checkpoint; its eval loss is not the lowest"),
    (hard_coded, lambda r, a: ckpt(r, is_trainable=True), "on another run, `best_checkpoint` returns"),
    (from_the_seed, lambda r, a: ckpt(r, is_trainable=True), "on another run, `best_checkpoint` returns"),
    (elsewhere, lambda r, a: ckpt(r, is_trainable=True), "outside the run folder it was given"),
    (bare_name, lambda r, a: ckpt(r, is_trainable=True), "outside the run folder it was given"),
    (breaks, lambda r, a: ckpt(r, is_trainable=True), "raised KeyError"),
    (lambda run: 3, lambda r, a: ckpt(r, is_trainable=True), "should return the checkpoint's path, not a int"),
    (None, lambda r, a: ckpt(r, is_trainable=True), "`best_checkpoint` is still None"),
    ("checkpoint-100", lambda r, a: ckpt(r, is_trainable=True), "should be a function of a run folder, not a str"),
    (AlwaysEqual(), lambda r, a: ckpt(r, is_trainable=True), "should be a function"),
    (best_checkpoint, lambda r, a: ckpt(r, LAST, is_trainable=True), f"holds {LAST}, not the checkpoint with"),
    (best_checkpoint, lambda r, a: ckpt(r), "8 of the 8 LoRA tensors of the active adapter .* are frozen"),
    (best_checkpoint, lambda r, a: ckpt(r).train(), "are frozen"),
    (best_checkpoint, lambda r, a: _frozen_second(r), "8 of the 8 .* \\('best'\\) are frozen"),
    (best_checkpoint, lambda r, a: _rewrapped(r), "LoRA added on top of LoRA|fresh adapter"),
    (best_checkpoint, lambda r, a: get_peft_model(load_base_model(), LoraConfig(
        r=8, target_modules=["c_attn"], fan_in_fan_out=True)), r"fresh adapter \(its lora_B are zero\)"),
    (best_checkpoint, lambda r, a: ckpt(a, is_trainable=True), "does not hold the weights of any checkpoint"),
    (best_checkpoint, lambda r, a: _thawed_base(r), "base-model parameters .* require grad"),
    (best_checkpoint, lambda r, a: ckpt(r).base_model.model, "not a PeftModel"),
]


@pytest.mark.parametrize(("find", "make", "pattern"), WRONG_Q3)
def test_ex07_q2_wrong_answers(find, make, pattern, run, runs):
    fails("ex07_q2", pattern, best_checkpoint=find, continued=make(run, runs[1]))


def test_ex07_q2_another_learners_run_fails(run, monkeypatch):
    continued = ckpt(run, is_trainable=True)
    monkeypatch.setenv("COURSE_LEARNER", "bob")
    record_given("ex07_given_trainer", run=run)
    fails("ex07_q2", "made for another learner|holds checkpoint", best_checkpoint=best_checkpoint,
          continued=continued)
