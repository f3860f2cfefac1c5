"""Exercise 7 (versions, sharing, combining): its checks accept right answers, and reject wrong
ones with feedback that says what is wrong.
Real objects built from the shipped tiny model; each question has right variants and wrong answers."""
from __future__ import annotations

import shutil

import pytest
import torch
from check_assertions import fails, passes
from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file, save_file

from course_utils import (
    load_base_model,
    load_tokenizer,
    shipped_adapter,
)
from course_utils.adapter_format import CONFIG_FILE, WEIGHTS_FILE
from course_utils.grading.checks import (
    given_adapter,
    renamed_colleague,
)


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


