"""Exercise 4 (devices and dtypes): its checks accept right answers, and reject wrong
ones with feedback that says what is wrong.
Real objects built from the shipped tiny model; each question has right variants and wrong answers."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from check_assertions import fails, passes
from peft import LoraConfig, PeftModel, get_peft_model

from course_utils import (
    device_name,
    load_base_model,
    load_tokenizer,
    shipped_adapter,
)
from course_utils.grading.checks import (
    given_adapter,
    memory_budget,
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




# ---------------------------------------------------------------------------------------- exercise 4
def test_ex04_q1(saved, capsys):
    model, folder = saved
    ok = {"folder": folder, "reference": model}
    good = PeftModel.from_pretrained(load_base_model(dtype=torch.bfloat16), str(folder))
    passes("ex04_q1", capsys, bf16_model=good, lora_dtype=torch.float32, **ok)
    cast_first = PeftModel.from_pretrained(load_base_model().to(torch.bfloat16), folder, adapter_name="mine")
    passes("ex04_q1", capsys, bf16_model=cast_first, lora_dtype="float32", **ok)
    fails("ex04_q1", r"base parameters are \{'float32'", bf16_model=reload(folder), lora_dtype=torch.float32, **ok)
    fails("ex04_q1", r"base parameters are \{'float16'",
          bf16_model=PeftModel.from_pretrained(load_base_model(dtype=torch.float16), str(folder)),
          lora_dtype=torch.float32, **ok)
    fails("ex04_q1", r"LoRA weights are \{'bfloat16'.*cast the base before",
          bf16_model=reload(folder).to(torch.bfloat16), lora_dtype=torch.bfloat16, **ok)
    fails("ex04_q1", r"LoRA weights are \{'bfloat16'",
          bf16_model=PeftModel.from_pretrained(load_base_model(dtype=torch.bfloat16), folder,
                                               autocast_adapter_dtype=False), lora_dtype=torch.bfloat16, **ok)
    fails("ex04_q1", "not the dtype your model's LoRA weights have", bf16_model=good, lora_dtype=torch.bfloat16, **ok)
    fails("ex04_q1", "not a torch dtype's name", bf16_model=good, lora_dtype="fp32", **ok)
    fails("ex04_q1", "should be a torch dtype", bf16_model=good, lora_dtype=32, **ok)
    other = PeftModel.from_pretrained(load_base_model(dtype=torch.bfloat16), shipped_adapter("spanish_sentiment"))
    fails("ex04_q1", "LoRA layers are not the ones saved", bf16_model=other, lora_dtype=torch.float32, **ok)


def _broken(folder):
    model = reload(folder)
    model.base_model.model.transformer.h[2].mlp.c_fc.base_layer.to(torch.bfloat16)
    return model


def test_ex04_q2(saved, capsys):
    model, folder = saved
    ok = {"folder": folder, "reference": model}
    broken = _broken(folder)
    passes("ex04_q2", capsys, fixed=broken.to(torch.float32), broken=broken, **ok)
    broken = _broken(folder)
    passes("ex04_q2", capsys, fixed=broken.float(), broken=broken, **ok)
    broken = _broken(folder)
    broken.base_model.model.transformer.h[2].mlp.c_fc.base_layer.float()
    passes("ex04_q2", capsys, fixed=broken, broken=broken, **ok)
    broken = _broken(folder)
    fails("ex04_q2", r"\{'float32': 66, 'bfloat16': 2\}", fixed=broken, broken=broken, **ok)
    fails("ex04_q2", r"\{'bfloat16': 68\}", fixed=broken.to(torch.bfloat16), broken=broken, **ok)
    fails("ex04_q2", "without reloading", fixed=reload(folder), broken=_broken(folder), **ok)
    broken = _broken(folder)
    fails("ex04_q2", "without reloading or copying", fixed=copy.deepcopy(broken).float(), broken=broken, **ok)
    fails("ex04_q2", "not a PeftModel", fixed=load_base_model(), broken=broken, **ok)
    other = lora(targets=("c_attn",))
    fails("ex04_q2", "LoRA layers are not the ones saved", fixed=other, broken=other, **ok)


def test_ex04_q3(saved, capsys):
    model, folder = saved
    ok = {"folder": folder, "reference": model}
    best = device_name()

    def place(m):
        device = device_name()
        return m.to(device), device

    def place_by_hand(m):
        device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
        m = m.to(torch.device(device))
        return m, device

    placed, device = place(reload(folder))
    passes("ex04_q3", capsys, place=place, placed=placed, device=device, **ok)
    placed, device = place_by_hand(reload(folder))
    passes("ex04_q3", capsys, place=place_by_hand, placed=placed, device=device, **ok)

    def hard_coded(m):
        return m, best  # the device typed in, the model not moved

    fails("ex04_q3", "still picks .*do not hard-code", place=hard_coded, placed=reload(folder), device=best, **ok)
    split = reload(folder)
    split.base_model.model.transformer.h[0].attn.c_attn.lora_A["default"].to("meta")
    fails("ex04_q3", r"sit on 2 device\(s\).*'meta': 1", place=place, placed=split, device=best, **ok)
    wrong = "cuda" if best != "cuda" else "cpu"
    fails("ex04_q3", f"device '{wrong}' is not the best one", place=place, placed=reload(folder), device=wrong, **ok)
    fails("ex04_q3", "should be the device's name", place=place, placed=reload(folder), device=torch.device(best), **ok)
    fails("ex04_q3", "not a PeftModel", place=place, placed=load_base_model(), device=best, **ok)
    fails("ex04_q3", "should be a function", place="cpu", placed=reload(folder), device=best, **ok)
    fails("ex04_q3", r"return \(model, device\)", place=lambda m: m.to(device_name()), placed=reload(folder),
          device=best, **ok)


def test_ex04_q4(saved, capsys):
    model, folder = saved
    ok = {"folder": folder, "reference": model}
    assert memory_budget(folder) < sum(p.numel() * 4 for p in model.parameters())

    def size(m):
        return sum(p.numel() * p.element_size() for p in m.parameters())

    bf16 = PeftModel.from_pretrained(load_base_model(dtype=torch.bfloat16), folder)
    passes("ex04_q4", capsys, fitted=bf16, fitted_bytes=size(bf16), **ok)
    fp16 = PeftModel.from_pretrained(load_base_model(dtype=torch.float16), folder)
    passes("ex04_q4", capsys, fitted=fp16, fitted_bytes=np.int64(size(fp16)), **ok)
    fp32 = reload(folder)
    fails("ex04_q4", "over the budget", fitted=fp32, fitted_bytes=size(fp32), **ok)
    fails("ex04_q4", "`fitted_bytes` is", fitted=bf16, fitted_bytes=memory_budget(folder), **ok)
    fails("ex04_q4", "whole number", fitted=bf16, fitted_bytes=f"{size(bf16)} bytes", **ok)
    all16 = PeftModel.from_pretrained(load_base_model(dtype=torch.bfloat16), folder, autocast_adapter_dtype=False)
    fails("ex04_q4", "LoRA weights should stay float32", fitted=all16, fitted_bytes=size(all16), **ok)
    mixed = reload(folder)
    for block in mixed.base_model.model.transformer.h[:3]:
        block.to(torch.bfloat16)
    fails("ex04_q4", "one dtype for the whole base", fitted=mixed, fitted_bytes=size(mixed), **ok)
    other = PeftModel.from_pretrained(load_base_model(dtype=torch.bfloat16), shipped_adapter("spanish_sentiment"))
    fails("ex04_q4", "LoRA layers are not the ones saved", fitted=other, fitted_bytes=size(other), **ok)
    fails("ex04_q4", "not a PeftModel", fitted=load_base_model(dtype=torch.bfloat16), fitted_bytes=1, **ok)


