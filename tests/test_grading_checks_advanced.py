"""The checks of exercises 6 and 7: the solution passes, plausible wrong answers fail with one line saying what
is wrong. Real objects built from the shipped tiny model."""
from __future__ import annotations

import shutil

import pytest
import torch
from check_assertions import fails, passes
from peft import LoraConfig, PeftModel, TaskType, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file, save_file
from transformers import GPT2ForSequenceClassification

from course_utils import course_model, load_base_model, shipped_adapter
from course_utils.adapter_format import CONFIG_FILE, WEIGHTS_FILE
from course_utils.grading.checks import entity_colleague, renamed_colleague
from course_utils.grading.questions.ex06 import _classifier


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


@pytest.fixture(scope="module")
def renamed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("theirs")
    theirs = renamed_colleague()  # the exercise's given adapter: the checker builds the same one
    theirs.save_pretrained(folder)
    weights = load_file(folder / WEIGHTS_FILE)
    save_file({k.replace("model.transformer.", "model.decoder.transformer."): v for k, v in weights.items()},
              folder / WEIGHTS_FILE, metadata={"format": "pt"})
    return folder, theirs


def test_ex07_q1_renamed_paths_right_answers(renamed, tmp_path, capsys):
    folder, theirs = renamed
    mapped = PeftModel.from_pretrained(load_base_model(), folder, key_mapping={r"^decoder\.": ""})
    passes("ex07_q1", capsys, repaired=mapped, reference=theirs)
    mapped = PeftModel.from_pretrained(load_base_model(), folder, adapter_name="theirs",
                                       key_mapping={r"^decoder\.transformer\.": "transformer."})
    passes("ex07_q1", capsys, repaired=mapped, reference=theirs)
    shutil.copytree(folder, tmp_path / "fixed")  # rewrite the file with the names this version expects
    weights = load_file(folder / WEIGHTS_FILE)
    save_file({k.replace(".decoder.", "."): v for k, v in weights.items()}, tmp_path / "fixed" / WEIGHTS_FILE,
              metadata={"format": "pt"})
    passes("ex07_q1", capsys, repaired=PeftModel.from_pretrained(load_base_model(), tmp_path / "fixed"),
           reference=theirs)
    by_hand = get_peft_model(load_base_model(), LoraConfig.from_pretrained(folder))
    set_peft_model_state_dict(by_hand, {k.replace(".decoder.", "."): v for k, v in weights.items()})
    passes("ex07_q1", capsys, repaired=by_hand, reference=theirs)


def test_ex07_q1_renamed_paths_wrong_answers(renamed):
    folder, theirs = renamed
    with pytest.warns(UserWarning, match="Found missing adapter keys"):
        as_is = PeftModel.from_pretrained(load_base_model(), folder)
    fails("ex07_q1", "different logits", repaired=as_is, reference=theirs)
    with pytest.warns(UserWarning, match="Found missing adapter keys"):
        backwards = PeftModel.from_pretrained(load_base_model(), folder,
                                              key_mapping={r"^transformer\.": "decoder.transformer."})
    fails("ex07_q1", "different logits", repaired=backwards, reference=theirs)
    fresh = get_peft_model(load_base_model(), LoraConfig.from_pretrained(folder))
    fails("ex07_q1", "different logits", repaired=fresh, reference=theirs)
    fails("ex07_q1", "not a PeftModel", repaired=load_base_model(), reference=theirs)
    fails("ex07_q1", "not a PeftModel", reference=theirs,
          repaired=PeftModel.from_pretrained(load_base_model(), folder, key_mapping={r"^decoder\.": ""})
          .merge_and_unload())
    fails("ex07_q1", "reference model itself", repaired=theirs, reference=theirs)


def test_ex07_q2_the_base_given_back(capsys):
    def sentiment(base=None):
        return PeftModel.from_pretrained(base or load_base_model(), shipped_adapter("spanish_sentiment"))

    wrapped = sentiment()
    fails("ex07_q2", "still a PeftModel", clean_base=wrapped, sentiment=wrapped)
    fails("ex07_q2", "still has 16 LoRA layers", clean_base=wrapped.base_model.model, sentiment=wrapped)
    fails("ex07_q2", "still has 16 LoRA layers", clean_base=wrapped.get_base_model(), sentiment=wrapped)
    fails("ex07_q2", "still has 16 LoRA layers", clean_base=wrapped.base_model, sentiment=wrapped)
    kept = load_base_model()
    fails("ex07_q2", "still has 16 LoRA layers", clean_base=kept, sentiment=sentiment(kept))  # changed in place
    fails("ex07_q2", "not by loading again", clean_base=load_base_model(), sentiment=wrapped)
    merged = sentiment()
    fails("ex07_q2", "merged in, not removed", clean_base=merged.merge_and_unload(), sentiment=merged)
    with wrapped.disable_adapter():
        fails("ex07_q2", "still a PeftModel", clean_base=wrapped, sentiment=wrapped)
    passes("ex07_q2", capsys, clean_base=wrapped.unload(), sentiment=wrapped)
    other = sentiment()
    passes("ex07_q2", capsys, clean_base=other.base_model.unload(), sentiment=other)
    kept = load_base_model()
    other = sentiment(kept)
    other.unload()
    passes("ex07_q2", capsys, clean_base=kept, sentiment=other)


@pytest.fixture(scope="module")
def combined(tmp_path_factory):
    root = tmp_path_factory.mktemp("combined")
    two = PeftModel.from_pretrained(load_base_model(), shipped_adapter("spanish_sentiment"), adapter_name="es")
    two.load_adapter(shipped_adapter("english_ner"), adapter_name="ner")
    for kind in ("cat", "linear", "svd"):
        two.add_weighted_adapter(["es", "ner"], [1.0, 1.0], adapter_name=kind, combination_type=kind)
    two.add_weighted_adapter(["es", "ner"], [0.5, 0.5], adapter_name="halved", combination_type="cat")
    two.add_weighted_adapter(["es", "ner"], [1.0, 1.0], adapter_name="default", combination_type="cat")
    two.save_pretrained(root / "all", selected_adapters=["cat", "linear", "svd", "halved", "es"])
    two.save_pretrained(root / "at_root", selected_adapters=["default"])
    two.save_pretrained(root / "pickled", selected_adapters=["cat"], safe_serialization=False)
    return root, two


def test_ex07_q3_combined_adapter_right_answers(combined, capsys):
    root, _ = combined
    passes("ex07_q3", capsys, combo_folder=root / "all" / "cat")
    passes("ex07_q3", capsys, combo_folder=str(root / "at_root"))
    passes("ex07_q3", capsys, combo_folder=root / "pickled" / "cat")


def test_ex07_q3_combined_adapter_wrong_answers(combined, tmp_path):
    root, two = combined
    fails("ex07_q3", r"subfolder \(cat, es, halved, linear, svd/?\)", combo_folder=root / "all")
    fails("ex07_q3", "does not compute both adapters together", combo_folder=root / "all" / "linear")
    fails("ex07_q3", "does not compute both adapters together", combo_folder=root / "all" / "halved")
    fails("ex07_q3", "does not compute both adapters together", combo_folder=root / "all" / "svd")
    fails("ex07_q3", "does not compute both adapters together", combo_folder=root / "all" / "es")
    fails("ex07_q3", "does not compute both", combo_folder=shipped_adapter("english_ner"))
    fails("ex07_q3", "nothing was saved", combo_folder=tmp_path / "missing")
    fails("ex07_q3", "should be the folder's path .*not a PeftModel", combo_folder=two)
    (tmp_path / "config_only").mkdir()
    shutil.copy(root / "all" / "cat" / CONFIG_FILE, tmp_path / "config_only")
    fails("ex07_q3", "no adapter_model.safetensors in the folder", combo_folder=tmp_path / "config_only")


def test_a_classifier_check_builds_a_new_random_head_each_time():
    a, b = _classifier(0).score.weight, _classifier(1).score.weight
    assert not torch.equal(a, b)
    assert isinstance(_classifier(0), GPT2ForSequenceClassification) and course_model()
