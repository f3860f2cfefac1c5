"""The checks of exercises 6 and 7: the solution passes, plausible wrong answers fail with one line saying what
is wrong. Real objects built from the shipped tiny model."""
from __future__ import annotations

import pytest
import torch
from check_assertions import fails, passes
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import GPT2ForSequenceClassification

from course_utils import course_model, load_base_model, load_tokenizer, shipped_adapter
from course_utils.grading.checks import CHECKS
from course_utils.grading.checks_advanced import ADVANCED


def test_every_advanced_check_is_registered_with_its_points():
    assert {cid: CHECKS[cid].points for cid, *_ in ADVANCED} == {cid: pts for cid, pts, *_ in ADVANCED}


def fixed_lora(model, targets=("c_attn",), **extra):
    torch.manual_seed(0)
    peft = get_peft_model(model, LoraConfig(r=8, target_modules=list(targets), fan_in_fan_out=True,
                                            init_lora_weights=False, **extra))
    return peft


@pytest.fixture(scope="module")
def added_tokens(tmp_path_factory):
    tok = load_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<ent>", "</ent>"]})
    base = load_base_model()
    base.resize_token_embeddings(len(tok))
    model = fixed_lora(base, modules_to_save=["wte"])
    with torch.no_grad():
        model.base_model.model.transformer.wte.modules_to_save["default"].weight[-2:] += 0.5
    folder = tmp_path_factory.mktemp("tokens") / "adapter"
    model.save_pretrained(folder)
    return model, folder, len(tok)


def test_ex06_q1_added_tokens(added_tokens, capsys):
    model, folder, n = added_tokens
    base = load_base_model()
    base.resize_token_embeddings(n)
    passes("ex06_q1", capsys, fixed=PeftModel.from_pretrained(base, folder), reference=model)
    fails("ex06_q1", "1024 rows, the adapter was trained with 1026",
          fixed=fixed_lora(load_base_model()), reference=model)
    other = load_base_model()
    other.resize_token_embeddings(n)  # the right size, but the adapter's trained rows are not loaded
    fails("ex06_q1", "different logits", fixed=fixed_lora(other), reference=model)
    fails("ex06_q1", "not a PeftModel", fixed=load_base_model(), reference=model)


@pytest.mark.parametrize("config", [
    LoraConfig(task_type="SEQ_CLS", r=8, target_modules=["c_attn"], fan_in_fan_out=True),
    LoraConfig(r=8, target_modules=["c_attn"], fan_in_fan_out=True, modules_to_save=["score"]),
])
def test_ex06_q2_configs_that_keep_the_head(config, capsys):
    passes("ex06_q2", capsys, config=config)


def test_ex06_q2_a_config_that_loses_the_head():
    fails("ex06_q2", r"head \(`score`\) is frozen", config=LoraConfig(r=8, target_modules=["c_attn"], fan_in_fan_out=True))
    fails("ex06_q2", "not a LoraConfig", config={"task_type": "SEQ_CLS"})


def test_ex06_q3_a_checkpoint_to_continue_from(tmp_path, capsys):
    trained = fixed_lora(load_base_model())
    trained.save_pretrained(tmp_path / "checkpoint-4")
    def load(**kw):
        return PeftModel.from_pretrained(load_base_model(), tmp_path / "checkpoint-4", **kw)

    passes("ex06_q3", capsys, continued=load(is_trainable=True), reference=trained)
    fails("ex06_q3", "are frozen", continued=load(), reference=trained)
    with pytest.warns(UserWarning, match="second time"):
        rewrapped = get_peft_model(load().base_model.model,
                                   LoraConfig(r=8, target_modules=["c_attn"], fan_in_fan_out=True))
    fails("ex06_q3", "different logits", continued=rewrapped, reference=trained)
    thawed = load(is_trainable=True)
    thawed.base_model.model.transformer.wte.weight.requires_grad_(True)
    fails("ex06_q3", "base-model parameters .* require grad", continued=thawed, reference=trained)


def test_ex07_q1_renamed_paths(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    theirs = fixed_lora(load_base_model(), targets=("c_attn", "c_fc"))
    theirs.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "adapter_model.safetensors")
    save_file({k.replace("model.transformer.", "model.decoder.transformer."): v for k, v in weights.items()},
              tmp_path / "adapter_model.safetensors", metadata={"format": "pt"})
    with pytest.warns(UserWarning, match="Found missing adapter keys"):
        as_is = PeftModel.from_pretrained(load_base_model(), tmp_path)
    fails("ex07_q1", "different logits", repaired=as_is, reference=theirs)
    mapped = PeftModel.from_pretrained(load_base_model(), tmp_path, key_mapping={r"^decoder\.": ""})
    passes("ex07_q1", capsys, repaired=mapped, reference=theirs)


def test_ex07_q2_the_base_given_back(capsys):
    wrapped = PeftModel.from_pretrained(load_base_model(), shipped_adapter("spanish_sentiment"))
    fails("ex07_q2", "still a PeftModel", clean_base=wrapped)
    fails("ex07_q2", "still has 16 LoRA layers", clean_base=wrapped.base_model.model)
    merged = PeftModel.from_pretrained(load_base_model(), shipped_adapter("spanish_sentiment")).merge_and_unload()
    fails("ex07_q2", "merged in, not removed", clean_base=merged)
    passes("ex07_q2", capsys, clean_base=wrapped.unload())


@pytest.fixture(scope="module")
def combined(tmp_path_factory):
    root = tmp_path_factory.mktemp("combined")
    two = PeftModel.from_pretrained(load_base_model(), shipped_adapter("spanish_sentiment"), adapter_name="es")
    two.load_adapter(shipped_adapter("english_ner"), adapter_name="ner")
    for kind in ("cat", "linear"):
        two.add_weighted_adapter(["es", "ner"], [1.0, 1.0], adapter_name=kind, combination_type=kind)
    two.save_pretrained(root, selected_adapters=["cat", "linear"])
    return root


def test_ex07_q3_combined_adapter(combined, capsys, tmp_path):
    passes("ex07_q3", capsys, combo_folder=combined / "cat")
    fails("ex07_q3", r"subfolder \(cat, linear/?\)|subfolder", combo_folder=combined)
    fails("ex07_q3", "does not compute both adapters together", combo_folder=combined / "linear")
    fails("ex07_q3", "does not compute both", combo_folder=shipped_adapter("english_ner"))
    fails("ex07_q3", "nothing was saved", combo_folder=tmp_path / "missing")


def test_a_classifier_check_builds_a_new_random_head_each_time():
    from course_utils.grading.checks_advanced import _classifier

    a, b = _classifier(0).score.weight, _classifier(1).score.weight
    assert not torch.equal(a, b)
    assert isinstance(_classifier(0), GPT2ForSequenceClassification) and course_model()
