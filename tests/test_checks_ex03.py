"""Exercise 3 (gotchas and errors): its checks accept right answers, and reject wrong
ones with feedback that says what is wrong.
Real objects built from the shipped tiny model; each question has right variants and wrong answers."""
from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch
from check_assertions import fails, passes
from peft import LoraConfig, PeftModel, get_peft_model

from course_utils import (
    load_base_model,
    load_tokenizer,
    shipped_adapter,
)
from course_utils.grading.checks import (
    broken_rank_folder,
    given_adapter,
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




# ---------------------------------------------------------------------------------------- exercise 3
@pytest.fixture(scope="module")
def ex03_shared(tmp_path_factory):
    shared = tmp_path_factory.mktemp("ex03") / "shared"
    return given_adapter(shared, adapter_name="sentiment"), shared


def test_ex03_q1(ex03_shared, capsys):
    colleague, shared = ex03_shared
    ok = {"shared": shared, "reference": colleague}
    passes("ex03_q1", capsys, fixed=reload(shared / "sentiment"), **ok)
    passes("ex03_q1", capsys, fixed=reload(shared, subfolder="sentiment", adapter_name="sentiment"), **ok)
    fails("ex03_q1", "does not hold the weights", fixed=lora(targets=("c_attn",), seed=1), **ok)
    fails("ex03_q1", "require grad, like the model you built", fixed=copy.deepcopy(colleague), **ok)
    fails("ex03_q1", "not a PeftModel", fixed=load_base_model(), **ok)
    fails("ex03_q1", "very model you saved", fixed=colleague, **ok)
    fails("ex03_q1", "does not hold the weights", fixed=reload(shipped_adapter("spanish_sentiment")), **ok)
    fails("ex03_q1", "require grad", fixed=reload(shared / "sentiment", is_trainable=True), **ok)


def test_ex03_q2(capsys):
    passes("ex03_q2", capsys, config=LoraConfig(r=8, target_modules=["c_attn"]))
    passes("ex03_q2", capsys, config=LoraConfig(r=8, lora_alpha=32, target_modules=r".*\.c_attn"))
    passes("ex03_q2", capsys, config=LoraConfig(r=np.int64(8), target_modules=["attn.c_attn"]))
    fails("ex03_q2", r"still fails .*q_proj", config=LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
    fails("ex03_q2", r"LoRA lands on \['c_attn', 'c_proj'\]", config=LoraConfig(r=8, target_modules=["c_attn", "c_proj"]))
    fails("ex03_q2", "1 of the 4 layers", config=LoraConfig(r=8, target_modules=["h.0.attn.c_attn"]))
    fails("ex03_q2", "not a LoraConfig", config={"target_modules": ["c_attn"]})
    fails("ex03_q2", "rank r=16; the task asks for rank 8", config=LoraConfig(r=16, target_modules=["c_attn"]))
    fails("ex03_q2", "still fails", config=LoraConfig(r=8, target_modules="c_attn"))


def _two(first="english_ner", second="spanish_sentiment", names=None):
    """A base model with two shipped adapters, loaded under ``names`` (default: the adapters' own names)."""
    names = names or (first, second)
    model = PeftModel.from_pretrained(load_base_model(), shipped_adapter(first), adapter_name=names[0])
    model.load_adapter(shipped_adapter(second), adapter_name=names[1])
    return model


def test_ex03_q3(capsys):
    good = _two()
    good.set_adapter("spanish_sentiment")
    passes("ex03_q3", capsys, spanish_model=good)
    renamed = _two()
    renamed.load_adapter(shipped_adapter("spanish_sentiment"), adapter_name="spanish")
    renamed.set_adapter("spanish")
    passes("ex03_q3", capsys, spanish_model=renamed)
    fails("ex03_q3", "active adapter 'english_ner' does not hold the Spanish", spanish_model=_two())
    alone = PeftModel.from_pretrained(load_base_model(), shipped_adapter("spanish_sentiment"),
                                      adapter_name="spanish_sentiment")
    fails("ex03_q3", "holds english_ner's weights: keep it loaded", spanish_model=alone)
    swapped = _two("english_ner", "english_ner", names=("english_ner", "spanish_sentiment"))
    swapped.set_adapter("spanish_sentiment")
    fails("ex03_q3", "does not hold the Spanish", spanish_model=swapped)
    deleted = _two()
    deleted.set_adapter("spanish_sentiment")
    deleted.delete_adapter("english_ner")
    fails("ex03_q3", "keep it loaded", spanish_model=deleted)
    both_active = _two()
    both_active.base_model.set_adapter(["english_ner", "spanish_sentiment"])
    fails("ex03_q3", "2 active adapters", spanish_model=both_active)
    fails("ex03_q3", "not a PeftModel", spanish_model="spanish_sentiment")


@pytest.fixture(scope="module")
def sent(tmp_path_factory):
    return broken_rank_folder(tmp_path_factory.mktemp("ex03s") / "sent")


def _edit_config(src, dest, **changes):
    shutil.copytree(src, dest)
    config = json.loads((dest / "adapter_config.json").read_text())
    config.update(changes)
    (dest / "adapter_config.json").write_text(json.dumps(config))
    return dest


def test_ex03_q4(sent, tmp_path, capsys):
    with pytest.raises(RuntimeError, match="size mismatch"):
        reload(sent)
    passes("ex03_q4", capsys, repaired=_edit_config(sent, tmp_path / "json", r=8))
    via_config = tmp_path / "via_config"
    config = LoraConfig.from_pretrained(str(sent))
    config.r = 8
    config.save_pretrained(str(via_config))
    shutil.copy(sent / "adapter_model.safetensors", via_config)
    passes("ex03_q4", capsys, repaired=str(via_config))
    fails("ex03_q4", "still does not load: RuntimeError", repaired=sent)
    fails("ex03_q4", "still does not load", repaired=_edit_config(sent, tmp_path / "r16", r=16))
    fails("ex03_q4", "different logits", repaired=_edit_config(sent, tmp_path / "alpha", r=8, lora_alpha=8))
    fresh = tmp_path / "fresh"
    lora(targets=("c_attn",), seed=9).save_pretrained(fresh)
    fails("ex03_q4", "no longer holds the colleague's trained weights", repaired=fresh)
    no_weights = _edit_config(sent, tmp_path / "noweights", r=8)
    (no_weights / "adapter_model.safetensors").unlink()
    fails("ex03_q4", "no adapter_model.safetensors", repaired=no_weights)
    fails("ex03_q4", "should be the folder's path", repaired=8)


