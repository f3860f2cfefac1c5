"""Exercise 1 (saving an adapter): its checks accept right answers, and reject wrong
ones with feedback that says what is wrong.
Real objects built from the shipped tiny model; each question has right variants and wrong answers."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from check_assertions import AlwaysEqual, fails, passes
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors import safe_open
from safetensors.torch import load_file

from course_utils import (
    list_files,
    load_base_model,
    load_tokenizer,
)
from course_utils.grading.checks import (
    given_adapter,
    teammate_update,
)
from course_utils.training import train_demo_adapter


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




# ---------------------------------------------------------------------------------------- exercise 1
@pytest.fixture(scope="module")
def ex01(tmp_path_factory, tok):
    """Exercise 1 up to Q2: a trained rank-4 adapter saved into a folder."""
    model = get_peft_model(load_base_model(), LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj"]))
    train_demo_adapter(model, tok, steps=2, seed=0, progress=False)
    folder = tmp_path_factory.mktemp("ex01") / "ex01_adapter"
    model.save_pretrained(folder)
    return model, folder


def test_ex01_q1(ex01, capsys):
    passes("ex01_q1", capsys, model=ex01[0])  # trained, as lesson 1 does
    passes("ex01_q1", capsys, model=lora(r=4, targets=("c_attn", "c_proj")))  # random init: also right
    passes("ex01_q1", capsys, model=lora(r=np.int64(4), targets=("c_attn", "c_proj")))
    fails("ex01_q1", "rank r=8", model=lora(r=8, targets=("c_attn", "c_proj")))
    fails("ex01_q1", r"LoRA sits on \['c_attn'\]", model=lora(r=4, targets=("c_attn",)))
    fails("ex01_q1", r"LoRA sits on \['c_attn', 'c_fc', 'c_proj'\]", model=lora(r=4, targets=("c_attn", "c_proj", "c_fc")))
    fails("ex01_q1", "does not change the output", model=lora(r=4, targets=("c_attn", "c_proj"), init=True))
    fails("ex01_q1", "not a PeftModel", model=load_base_model())
    unfrozen = lora(r=4, targets=("c_attn", "c_proj"))
    for p in unfrozen.parameters():
        p.requires_grad = True
    fails("ex01_q1", "base stays frozen", model=unfrozen)


def test_ex01_q2(ex01, tmp_path, capsys):
    model, folder = ex01
    passes("ex01_q2", capsys, folder=folder, model=model)
    passes("ex01_q2", capsys, folder=str(folder), model=model)
    selected = tmp_path / "selected"
    model.save_pretrained(selected, selected_adapters=["default"], safe_serialization=True)
    passes("ex01_q2", capsys, folder=selected, model=model)
    fails("ex01_q2", "nothing was saved", folder=tmp_path / "nope", model=model)
    fails("ex01_q2", "does not hold the weights of `model`", folder=folder, model=lora(r=4, targets=("c_attn", "c_proj")))
    bin_folder = tmp_path / "as_bin"
    model.save_pretrained(bin_folder, safe_serialization=False)  # the older pickle-free .bin format is a save too
    passes("ex01_q2", capsys, folder=bin_folder, model=model)
    full = tmp_path / "full"
    model.get_base_model().save_pretrained(full)
    fails("ex01_q2", "full model", folder=full, model=model)
    named = tmp_path / "named"
    lora(r=4, targets=("c_attn", "c_proj"), name="mine").save_pretrained(named)
    fails("ex01_q2", r"subfolder \(mine/\)", folder=named, model=model)
    fails("ex01_q2", "should be the folder's path", folder=1, model=model)


@pytest.fixture(scope="module")
def ex01_updated(ex01, tmp_path_factory):
    """The folder after the teammate's update (a copy: the Q2 tests keep the untouched folder)."""
    model, folder = ex01
    updated = tmp_path_factory.mktemp("ex01u") / "ex01_adapter"
    shutil.copytree(folder, updated)
    teammate_update(updated)
    return model, updated


def test_teammate_update_is_random_and_only_readable_from_the_folder(ex01, tmp_path):
    _, folder = ex01
    notes = set()
    for i in range(2):
        copy_ = tmp_path / str(i)
        shutil.copytree(folder, copy_)
        teammate_update(copy_)
        notes |= {f for f in list_files(copy_) if f.startswith("notes_")}
    assert len(notes) == 2


def test_ex01_q3(ex01_updated, capsys):
    _, folder = ex01_updated
    actual = sorted(list_files(folder))
    passes("ex01_q3", capsys, files=actual, folder=folder)
    passes("ex01_q3", capsys, files=tuple(p.name for p in folder.iterdir()), folder=folder)
    passes("ex01_q3", capsys, files={p.relative_to(folder) for p in folder.iterdir()}, folder=folder)
    from_memory = ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    fails("ex01_q3", "1 of the 4 files .* missing.* not from memory", files=from_memory, folder=folder)
    fails("ex01_q3", "not in the folder: adapter_model.bin", files=actual + ["adapter_model.bin"], folder=folder)
    fails("ex01_q3", "names a file twice", files=actual + actual[:1], folder=folder)
    fails("ex01_q3", "should be a list", files="adapter_model.safetensors", folder=folder)
    fails("ex01_q3", "relative to the folder", files=[str(p) for p in folder.iterdir()], folder=folder)
    fails("ex01_q3", "should hold names", files=[AlwaysEqual()], folder=folder)


def test_ex01_q4(ex01, capsys):
    model, folder = ex01
    passes("ex01_q4", capsys, n_tensors=24, folder=folder)  # 4 layers x (c_attn, attn.c_proj, mlp.c_proj) x (A, B)
    passes("ex01_q4", capsys, n_tensors=np.int64(24), folder=folder)
    passes("ex01_q4", capsys, n_tensors=torch.tensor(24), folder=folder)
    fails("ex01_q4", "too few", n_tensors=12, folder=folder)
    fails("ex01_q4", "too many", n_tensors=sum(1 for _ in model.parameters()), folder=folder)
    fails("ex01_q4", "whole number .*str", n_tensors="24", folder=folder)
    fails("ex01_q4", "whole number .*float", n_tensors=24.0, folder=folder)
    fails("ex01_q4", "whole number .*AlwaysEqual", n_tensors=AlwaysEqual(), folder=folder)
    fails("ex01_q4", "not a bool", n_tensors=True, folder=folder)


def _changed(model, folder):
    in_file = load_file(folder / "adapter_model.safetensors")
    params = {n.replace(".default", ""): p for n, p in model.named_parameters() if "lora_" in n}
    return [n for n, t in in_file.items() if not torch.equal(t, params[n].detach())]


def test_ex01_q5(ex01, ex01_updated, capsys):
    model, folder = ex01_updated
    right = _changed(model, folder)
    passes("ex01_q5", capsys, changed=right, folder=folder, model=model)
    with safe_open(str(folder / "adapter_model.safetensors"), "pt") as f:  # safe_open, model-parameter names
        as_params = {n.replace(".lora_A.", ".lora_A.default.").replace(".lora_B.", ".lora_B.default.")
                     for n in f.keys() if n in right}  # noqa: SIM118 - safe_open has keys(), no __iter__
    passes("ex01_q5", capsys, changed=as_params, folder=folder, model=model)
    everything = [n for n, _ in load_file(folder / "adapter_model.safetensors").items()]
    fails("ex01_q5", "the same in the file and in `model`", changed=everything, folder=folder, model=model)
    fails("ex01_q5", "missing from your answer", changed=right[1:], folder=folder, model=model)
    fails("ex01_q5", "missing from your answer", changed=[], folder=folder, model=model)
    fails("ex01_q5", "not tensors of", changed=["lora_A"], folder=folder, model=model)
    fails("ex01_q5", "should be a list", changed=len(right), folder=folder, model=model)
    _, untouched = ex01  # the folder before the update: nothing changed there
    fails("ex01_q5", "the same in the file", changed=right, folder=untouched, model=model)


def test_teammate_update_waits_for_the_saved_folder(tmp_path):
    assert teammate_update(None) is False and teammate_update(tmp_path) is False
    assert list(tmp_path.iterdir()) == []
