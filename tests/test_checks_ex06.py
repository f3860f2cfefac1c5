"""Exercise 6 (training, checkpoints, new tokens): its checks accept right answers, and reject wrong
ones with feedback that says what is wrong.
Real objects built from the shipped tiny model; each question has right variants and wrong answers."""
from __future__ import annotations

import pytest
import torch
from check_assertions import fails, passes
from peft import LoraConfig, PeftModel, TaskType, get_peft_model
from transformers import GPT2ForSequenceClassification

from course_utils import (
    course_model,
    load_base_model,
    load_tokenizer,
    shipped_adapter,
)
from course_utils.grading.checks import (
    entity_colleague,
    given_adapter,
)
from course_utils.grading.questions.ex06 import _classifier


def lora(r=8, targets=("c_attn", "c_fc"), init=False, name="default", seed=0):
    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(targets), init_lora_weights=init)
    return get_peft_model(load_base_model(), config, adapter_name=name)


def reload(folder, **kwargs):
    return PeftModel.from_pretrained(load_base_model(), str(folder), **kwargs)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A trained-looking adapter and the folder it was saved to (exercises 2 and 4 give the learner this)."""
    folder = tmp_path_factory.mktemp("saved") / "adapter"
    return given_adapter(folder, targets=("c_attn", "c_fc")), folder


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()




def fixed_lora(model, targets=("c_attn",), **extra):
    torch.manual_seed(0)
    peft = get_peft_model(model, LoraConfig(r=8, target_modules=list(targets), fan_in_fan_out=True,
                                            init_lora_weights=False, **extra))
    return peft


@pytest.fixture(scope="module")
def added_tokens(tmp_path_factory):
    model, tok = entity_colleague()  # the exercise's given adapter: the checker builds the same one
    folder = tmp_path_factory.mktemp("tokens") / "adapter"
    model.save_pretrained(folder)
    return model, folder, len(tok)


def test_ex06_q1_added_tokens(added_tokens, capsys):
    model, folder, n = added_tokens

    def resized(rows=n):
        base = load_base_model()
        base.resize_token_embeddings(rows)
        return base

    passes("ex06_q1", capsys, fixed=PeftModel.from_pretrained(resized(), folder), reference=model)
    passes("ex06_q1", capsys, fixed=PeftModel.from_pretrained(resized(1026), folder, adapter_name="ent",
                                                              is_trainable=True), reference=model)
    fails("ex06_q1", "1024 rows, the adapter was trained with 1026",
          fixed=fixed_lora(load_base_model()), reference=model)
    fails("ex06_q1", "different logits", fixed=fixed_lora(resized()), reference=model)  # trained rows not loaded
    fails("ex06_q1", "not a PeftModel", fixed=load_base_model(), reference=model)
    fails("ex06_q1", "not a PeftModel", fixed=PeftModel.from_pretrained(resized(), folder).merge_and_unload(),
          reference=model)
    fails("ex06_q1", "reference model itself", fixed=model, reference=model)
    other = PeftModel.from_pretrained(resized(), shipped_adapter("spanish_sentiment"))
    other.load_adapter(folder, adapter_name="ent")  # loaded but never made active
    fails("ex06_q1", "different logits", fixed=other, reference=model)


def seq_cls(**extra):
    return LoraConfig(**{"r": 8, "target_modules": ["c_attn"], "fan_in_fan_out": True, **extra})


@pytest.mark.parametrize("config", [
    seq_cls(task_type="SEQ_CLS"),
    seq_cls(modules_to_save=["score"]),
    seq_cls(task_type=TaskType.SEQ_CLS, target_modules=r".*\.c_attn"),
])
def test_ex06_q2_configs_that_keep_the_head(config, capsys):
    passes("ex06_q2", capsys, config=config)


@pytest.mark.parametrize(("config", "pattern"), [
    (seq_cls(), r"head \(`score`\) is frozen"),
    ({"task_type": "SEQ_CLS"}, "not a LoraConfig"),
    (seq_cls(task_type="CAUSAL_LM"), "task_type 'CAUSAL_LM', which does not fit a sequence classifier"),
    (seq_cls(modules_to_save=["classifier"]), r"head \(`score`\) is frozen"),
    (seq_cls(task_type="SEQ_CLS", inference_mode=True), r"head \(`score`\) is frozen"),
    (seq_cls(task_type="SEQ_CLS", r=16), "rank 16; the task asks for rank 8"),
    (seq_cls(target_modules=["c_attn", "score"]), "LoRA on c_attn, score;"),
    (seq_cls(task_type="SEQ_CLS", target_modules=["c_proj"]), "LoRA on c_proj;"),
])
def test_ex06_q2_configs_that_lose_the_head_or_miss_the_task(config, pattern):
    fails("ex06_q2", pattern, config=config)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    trained = fixed_lora(load_base_model())
    trained.save_pretrained(root / "checkpoint-4")
    torch.manual_seed(1)
    early = get_peft_model(load_base_model(), LoraConfig(r=8, target_modules=["c_attn"], fan_in_fan_out=True,
                                                         init_lora_weights=False))
    early.save_pretrained(root / "checkpoint-2")
    return root, trained


def test_ex06_q3_a_checkpoint_to_continue_from(checkpoints, capsys):
    root, trained = checkpoints

    def load(step=4, **kw):
        return PeftModel.from_pretrained(load_base_model(), root / f"checkpoint-{step}", **kw)

    given = {"checkpoint": root / "checkpoint-4", "reference": trained}

    passes("ex06_q3", capsys, continued=load(is_trainable=True), **given)
    passes("ex06_q3", capsys, continued=load(is_trainable=True, adapter_name="resume"), **given)
    thawed_lora = load()
    for name, p in thawed_lora.named_parameters():
        p.requires_grad_("lora_" in name)
    passes("ex06_q3", capsys, continued=thawed_lora, **given)

    fails("ex06_q3", "are frozen", continued=load(), **given)
    fails("ex06_q3", "are frozen", continued=load().train(), **given)
    with pytest.warns(UserWarning, match="second time"):
        rewrapped = get_peft_model(load().base_model.model,
                                   LoraConfig(r=8, target_modules=["c_attn"], fan_in_fan_out=True))
    fails("ex06_q3", "different logits", continued=rewrapped, **given)
    fresh = get_peft_model(load_base_model(), LoraConfig(r=8, target_modules=["c_attn"], fan_in_fan_out=True))
    fails("ex06_q3", "different logits", continued=fresh, **given)
    fails("ex06_q3", "different logits", continued=load(2, is_trainable=True), **given)
    thawed = load(is_trainable=True)
    thawed.base_model.model.transformer.wte.weight.requires_grad_(True)
    fails("ex06_q3", "base-model parameters .* require grad", continued=thawed, **given)
    everything = load()
    everything.requires_grad_(True)
    fails("ex06_q3", "base-model parameters .* require grad", continued=everything, **given)
    fails("ex06_q3", "not a PeftModel", continued=load().base_model.model, **given)
    fails("ex06_q3", "reference model itself", continued=trained, **given)


def test_a_classifier_check_builds_a_new_random_head_each_time():
    a, b = _classifier(0).score.weight, _classifier(1).score.weight
    assert not torch.equal(a, b)
    assert isinstance(_classifier(0), GPT2ForSequenceClassification) and course_model()
