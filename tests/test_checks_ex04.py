"""Exercise 4 (devices and dtypes): its checks accept right answers, and reject wrong
ones with feedback that says what is wrong.
Real objects built from the shipped tiny model; each question has right variants and wrong answers. The adapter,
the 16-bit dtype, the broken layer and the budget are made per learner (``COURSE_LEARNER``)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from check_assertions import AlwaysEqual, fails, passes
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer

from course_utils import assert_single_device, device_name, load_base_model, shipped_adapter
from course_utils.grading.evidence import evidence_root, record_given
from course_utils.grading.questions.ex04 import (
    GIVEN_ID,
    broken_copy,
    given_adapter,
    half_dtype,
    memory_budget,
    spec,
)
from course_utils.learner import learner_seed

FLOAT32_FITS = "l0"   # a learner whose budget holds the float32 model (asserted below)


def reload(folder, dtype=None, **kwargs):
    base = load_base_model() if dtype is None else load_base_model(dtype=dtype)
    return PeftModel.from_pretrained(base, str(folder), **kwargs)


def size(model, lora_only=False):
    return sum(p.numel() * p.element_size() for n, p in model.named_parameters() if "lora_" in n or not lora_only)


@pytest.fixture(scope="module")
def ci_folder(tmp_path_factory):
    return given_adapter(tmp_path_factory.mktemp("ex04") / "adapter", "ci")


@pytest.fixture()
def folder(ci_folder):
    """Learner ci's adapter, saved and snapshotted as the given cell does."""
    record_given(GIVEN_ID, folder=ci_folder)
    return ci_folder


def _as(learner, monkeypatch, tmp_path):
    """Act as ``learner``: their adapter saved (and snapshotted) into a folder of theirs."""
    monkeypatch.setenv("COURSE_LEARNER", learner)
    path = given_adapter(tmp_path / learner, learner)
    record_given(GIVEN_ID, folder=path)
    return path


def test_data_differs_per_learner():
    ci, bob = spec(learner_seed("ci")), spec(learner_seed("bob"))
    assert (ci["rank"], ci["half"], ci["layer"]) != (bob["rank"], bob["half"], bob["layer"])
    assert memory_budget("ci") != memory_budget("bob")


# ---------------------------------------------------------------------------------------- Q1
def test_ex04_q1_right(folder, capsys):
    half = half_dtype("ci")
    good = reload(folder, half)
    passes("ex04_q1", capsys, half_model=good, lora_dtype=torch.float32, lora_bytes=size(good, True), folder=folder)
    cast_first = PeftModel.from_pretrained(load_base_model().to(half), folder, adapter_name="mine")
    passes("ex04_q1", capsys, half_model=cast_first, lora_dtype="float32", lora_bytes=np.int64(size(good, True)),
           folder=folder)


def _other_half():
    return torch.float16 if half_dtype("ci") == torch.bfloat16 else torch.bfloat16


def _wrong_q1(folder):
    half = half_dtype("ci")
    good = reload(folder, half)
    n = size(good, True)
    other = PeftModel.from_pretrained(load_base_model(dtype=half), shipped_adapter("spanish_sentiment"))
    kept = reload(folder, half, autocast_adapter_dtype=False)
    return {
        "float32 base": (dict(half_model=reload(folder), lora_dtype=torch.float32, lora_bytes=n),
                         r"base parameters are \{'float32'"),
        "the other 16-bit dtype": (dict(half_model=reload(folder, _other_half()), lora_dtype=torch.float32,
                                        lora_bytes=n), f"base parameters are .*{str(_other_half())[6:]}"),
        "whole model cast": (dict(half_model=reload(folder).to(half), lora_dtype=half, lora_bytes=n // 2),
                             "LoRA weights are .*cast the base before"),
        "autocast off": (dict(half_model=kept, lora_dtype=half, lora_bytes=size(kept, True)), "LoRA weights are"),
        "wrong lora_dtype": (dict(half_model=good, lora_dtype=half, lora_bytes=n),
                             "not the dtype your model's LoRA weights have"),
        "dtype misspelled": (dict(half_model=good, lora_dtype="fp32", lora_bytes=n), "not a torch dtype's name"),
        "dtype as a number": (dict(half_model=good, lora_dtype=32, lora_bytes=n), "should be a torch dtype"),
        "another adapter": (dict(half_model=other, lora_dtype=torch.float32, lora_bytes=size(other, True)),
                            "LoRA layers are not the ones"),
        "bytes counted in 16 bits": (dict(half_model=good, lora_dtype=torch.float32, lora_bytes=n // 2),
                                     "`lora_bytes` is"),
        "bytes of the whole model": (dict(half_model=good, lora_dtype=torch.float32, lora_bytes=size(good)),
                                     "`lora_bytes` is"),
        "bytes as text": (dict(half_model=good, lora_dtype=torch.float32, lora_bytes=f"{n} bytes"), "whole number"),
        "always equal": (dict(half_model=good, lora_dtype=torch.float32, lora_bytes=AlwaysEqual()), "whole number"),
        "recipe run again": (dict(half_model=(again := reload(given_adapter(folder.parent / "again", "ci"), half)),
                                  lora_dtype=torch.float32, lora_bytes=size(again, True)),
                             "differ from the ones saved in `folder`"),
    }


Q1_CASES = ["float32 base", "the other 16-bit dtype", "whole model cast", "autocast off", "wrong lora_dtype",
            "dtype misspelled", "dtype as a number", "another adapter", "bytes counted in 16 bits",
            "bytes of the whole model", "bytes as text", "always equal", "recipe run again"]


@pytest.mark.parametrize("case", Q1_CASES)
def test_ex04_q1_wrong(case, folder):
    answers, message = _wrong_q1(folder)[case]
    fails("ex04_q1", message, folder=folder, **answers)


def test_ex04_q1_another_learners_numbers_fail(folder, monkeypatch, tmp_path, capsys):
    ci_model = reload(folder, half_dtype("ci"))
    ci_bytes = size(ci_model, True)
    theirs = _as("bob", monkeypatch, tmp_path)
    bob_model = reload(theirs, half_dtype("bob"))
    assert size(bob_model, True) != ci_bytes
    fails("ex04_q1", "`lora_bytes` is", half_model=bob_model, lora_dtype=torch.float32, lora_bytes=ci_bytes,
          folder=theirs)
    fails("ex04_q1", "", half_model=ci_model, lora_dtype=torch.float32, lora_bytes=ci_bytes, folder=theirs)
    passes("ex04_q1", capsys, half_model=bob_model, lora_dtype=torch.float32, lora_bytes=size(bob_model, True),
           folder=theirs)


def test_ex04_q1_folder_replaced_after_given(tmp_path):
    """New weights saved over `folder` after its given cell (the recipe run again), then loaded: the snapshot counts."""
    path = given_adapter(tmp_path / "adapter", "ci")
    record_given(GIVEN_ID, folder=path)
    given_adapter(path, "ci")
    model = reload(path, half_dtype("ci"))
    fails("ex04_q1", "differ from the ones saved in `folder`", half_model=model, lora_dtype=torch.float32,
          lora_bytes=size(model, True), folder=path)


def test_ex04_without_record(folder):
    record = evidence_root() / GIVEN_ID
    hidden = record.with_name(GIVEN_ID + ".hidden")
    record.rename(hidden)
    try:
        model = reload(folder, half_dtype("ci"))
        fails("ex04_q1", "no record of the adapter", half_model=model, lora_dtype=torch.float32,
              lora_bytes=size(model, True), folder=folder)
    finally:
        hidden.rename(record)


# ---------------------------------------------------------------------------------------- Q2
def test_ex04_q2_right(folder, capsys):
    broken = broken_copy(folder, "ci")
    passes("ex04_q2", capsys, fixed=broken.to(torch.float32), broken=broken, folder=folder)
    broken = broken_copy(folder, "ci")
    passes("ex04_q2", capsys, fixed=broken.float(), broken=broken, folder=folder)
    broken = broken_copy(folder, "ci")
    for module in broken.modules():
        if any(p.dtype == torch.bfloat16 for p in module.parameters(recurse=False)):
            module.float()
    passes("ex04_q2", capsys, fixed=broken, broken=broken, folder=folder)
    broken = broken_copy(folder, "ci")
    fixed = broken.float()
    fixed.merge_adapter()  # merged for inference: the outputs are the adapter's
    passes("ex04_q2", capsys, fixed=fixed, broken=broken, folder=folder)


def _half_to_fp16(folder):
    broken = broken_copy(folder, "ci")
    for module in broken.modules():
        if any(p.dtype == torch.bfloat16 for p in module.parameters(recurse=False)):
            module.half()
    return broken


def _switched_off(model):
    model.base_model.disable_adapter_layers()
    return model


def _scaled_to_zero(model):
    for module in model.modules():
        if isinstance(module, LoraLayer):
            module.set_scale("default", 0.0)
    return model


WRONG_Q2 = {
    "adapter switched off": (lambda f: (lambda b: (_switched_off(b.float()), b))(broken_copy(f, "ci")),
                             "LoRA layers switched off"),
    "set_scale(0)": (lambda f: (lambda b: (_scaled_to_zero(b.float()), b))(broken_copy(f, "ci")), "scaled by 0"),
    "unrepaired": (lambda f: (lambda b: (b, b))(broken_copy(f, "ci")), r"'bfloat16': 2\}"),
    "all bfloat16": (lambda f: (lambda b: (b.to(torch.bfloat16), b))(broken_copy(f, "ci")), r"\{'bfloat16': \d+\}"),
    "cast to float16": (lambda f: (lambda b: (b, b))(_half_to_fp16(f)), "'float16': 2"),
    "reloaded": (lambda f: (reload(f), broken_copy(f, "ci")), "without reloading"),
    "deep copy": (lambda f: (lambda b: (copy.deepcopy(b).float(), b))(broken_copy(f, "ci")), "or copying"),
    "base model": (lambda f: (load_base_model(), broken_copy(f, "ci")), "not a PeftModel"),
    "another adapter": (lambda f: (lambda m: (m, m))(get_peft_model(load_base_model(), LoraConfig(
        r=8, target_modules=["c_attn"], init_lora_weights=False))), "LoRA layers are not the ones"),
    "a string": (lambda f: ("fixed", broken_copy(f, "ci")), "not a PeftModel"),
}


@pytest.mark.parametrize("case", sorted(WRONG_Q2))
def test_ex04_q2_wrong(case, folder):
    make, message = WRONG_Q2[case]
    fixed, broken = make(folder)
    fails("ex04_q2", message, fixed=fixed, broken=broken, folder=folder)


# ---------------------------------------------------------------------------------------- Q3
def place(m):
    device = device_name()
    return m.to(device), device


def place_by_hand(m):
    device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    m = m.to(torch.device(device))
    return m, device


def place_with_cuda_method(m):
    device = device_name()
    return (m.cuda() if device == "cuda" else m.to(device=device)), device


def place_read_back(m):
    """The device's name read back from where the model landed."""
    m = m.to(device_name())
    return m, next(m.parameters()).device.type


def place_verified(m):
    """The move checked with the lesson's assert_single_device."""
    device = device_name()
    m = m.to(device)
    landed = assert_single_device(m)
    assert landed.split(":")[0] == device, f"model landed on {landed}, not {device}"
    return m, device


def _fixed(folder):
    return broken_copy(folder, "ci").float()


@pytest.mark.parametrize("right", [place, place_by_hand, place_with_cuda_method, place_read_back, place_verified])
def test_ex04_q3_right(right, folder, capsys):
    fixed = _fixed(folder)
    passes("ex04_q3", capsys, place=right, placed=right(fixed)[0], fixed=fixed, folder=folder)


def typed_in(m):
    return m.to("cpu"), "cpu"


def gpu_name(m):
    if torch.cuda.is_available():
        return m.to("cuda"), "gpu"
    return place(m)


def never_moves(m):
    return m, device_name()


def copies(m):
    return copy.deepcopy(m).to(device_name()), device_name()


def model_only(m):
    return m.to(device_name())


def device_object(m):
    return m.to(device_name()), torch.device(device_name())


def mps_for_any_gpu(m):
    gpu = torch.cuda.is_available() or torch.backends.mps.is_available()
    return m.to("mps" if gpu else "cpu"), device_name()


def casts_off_cpu(m):
    device = device_name()
    return (m.to(device, torch.float16) if device != "cpu" else m.to(device)), device


def tensor_by_tensor(m):
    device = device_name()
    for p in m.parameters():
        p.data = p.data.to(device)
    return m, device


WRONG_PLACE = {
    typed_in: "names the device 'cpu'",
    gpu_name: "names the device 'gpu'",
    never_moves: "moves the model to nowhere",
    copies: "returns another model",
    model_only: r"return \(model, device\)",
    device_object: "names the device '<device>'",
    mps_for_any_gpu: r"moves the model to \['mps'\]",
    casts_off_cpu: r"leaves the model's parameters \['float16'\] .*do not cast",
}


@pytest.mark.parametrize("wrong", sorted(WRONG_PLACE, key=lambda f: f.__name__), ids=lambda f: f.__name__)
def test_ex04_q3_wrong_function(wrong, folder):
    fixed = _fixed(folder)
    fails("ex04_q3", WRONG_PLACE[wrong], place=wrong, placed=place(fixed)[0], fixed=fixed, folder=folder)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a real GPU: moving tensor by tensor works there")
def test_ex04_q3_tensor_by_tensor_fails_where_simulated(folder):
    fixed = _fixed(folder)
    fails("ex04_q3", "raised", place=tensor_by_tensor, placed=place(fixed)[0], fixed=fixed, folder=folder)


def test_ex04_q3_wrong_answers(folder):
    fixed = _fixed(folder)
    placed = place(fixed)[0]
    fails("ex04_q3", "should be a function", place="cpu", placed=placed, fixed=fixed, folder=folder)
    fails("ex04_q3", "not a PeftModel", place=place, placed=place(load_base_model())[0], fixed=fixed, folder=folder)
    fresh = place(reload(folder))[0]
    fails("ex04_q3", "`placed` is not `fixed`", place=place, placed=fresh, fixed=fixed, folder=folder)
    fails("ex04_q3", "`placed` is not `fixed`", place=place, placed=place(copy.deepcopy(fixed))[0], fixed=fixed,
          folder=folder)
    fails("ex04_q3", "`placed` is not `fixed`", place=place, placed=place(_fixed(folder))[0], fixed=fixed,
          folder=folder)
    off = _switched_off(_fixed(folder))
    fails("ex04_q3", "LoRA layers switched off", place=place, placed=place(off)[0], fixed=off, folder=folder)
    split = place(_fixed(folder))[0]
    split.base_model.model.transformer.h[0].attn.c_attn.lora_A["default"].to("meta")
    fails("ex04_q3", r"tensors of `placed` sit on .*'meta': 1", place=place, placed=split, fixed=split, folder=folder)


# ---------------------------------------------------------------------------------------- Q4
def test_ex04_q4_right(folder, capsys):
    bf16 = reload(folder, torch.bfloat16)
    passes("ex04_q4", capsys, fitted=bf16, fitted_bytes=size(bf16), folder=folder)
    fp16 = reload(folder, torch.float16)
    passes("ex04_q4", capsys, fitted=fp16, fitted_bytes=np.int64(size(fp16)), folder=folder)


def test_ex04_q4_float32_when_it_fits(monkeypatch, tmp_path, capsys):
    theirs = _as(FLOAT32_FITS, monkeypatch, tmp_path)
    full = reload(theirs)
    assert size(full) <= memory_budget(FLOAT32_FITS)
    passes("ex04_q4", capsys, fitted=full, fitted_bytes=size(full), folder=theirs)
    bf16 = reload(theirs, torch.bfloat16)
    fails("ex04_q4", "a float32 base fits your budget too", fitted=bf16, fitted_bytes=size(bf16), folder=theirs)


def _mixed(folder):
    model = reload(folder)
    for block in model.base_model.model.transformer.h[:3]:
        block.to(torch.bfloat16)
    return model


def _on_meta(folder):
    model = reload(folder, torch.bfloat16)
    model.base_model.model.transformer.h[0].attn.c_attn.lora_A["default"].to("meta")
    return model


def _lora_rounded(folder):
    model = reload(folder, torch.bfloat16)
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.data = p.data.to(torch.bfloat16).float()
    return model


def _wrong_q4(folder):
    bf16 = reload(folder, torch.bfloat16)
    all16 = reload(folder, torch.bfloat16, autocast_adapter_dtype=False)
    other = PeftModel.from_pretrained(load_base_model(dtype=torch.bfloat16), shipped_adapter("spanish_sentiment"))
    mixed, full, rounded = _mixed(folder), reload(folder), _lora_rounded(folder)
    return {
        "float32 over the budget": (full, size(full), "over your budget"),
        "the budget typed in": (bf16, memory_budget("ci"), "`fitted_bytes` is"),
        "bytes as text": (bf16, f"{size(bf16)} bytes", "whole number"),
        "LoRA cast down": (all16, size(all16), "LoRA weights should stay float32"),
        "base of mixed dtypes": (mixed, size(mixed), "one dtype for the whole base"),
        "another adapter": (other, size(other), "LoRA layers are not the ones"),
        "no adapter": (load_base_model(dtype=torch.bfloat16), 1, "not a PeftModel"),
        "tensors on meta": (_on_meta(folder), size(bf16), "meta device"),
        "always equal": (bf16, AlwaysEqual(), "whole number"),
        "LoRA rounded through bfloat16": (rounded, size(rounded), "rounded through bfloat16 .*cast the base alone"),
        "adapter switched off": (_switched_off(reload(folder, torch.bfloat16)), size(bf16), "switched off"),
        "set_scale(0)": (_scaled_to_zero(reload(folder, torch.bfloat16)), size(bf16), "scaled by 0"),
    }


@pytest.mark.parametrize("case", ["float32 over the budget", "the budget typed in", "bytes as text",
                                  "LoRA cast down", "base of mixed dtypes", "another adapter", "no adapter",
                                  "tensors on meta", "always equal", "LoRA rounded through bfloat16",
                                  "adapter switched off", "set_scale(0)"])
def test_ex04_q4_wrong(case, folder):
    fitted, fitted_bytes, message = _wrong_q4(folder)[case]
    fails("ex04_q4", message, fitted=fitted, fitted_bytes=fitted_bytes, folder=folder)


def test_ex04_q4_another_learners_numbers_fail(folder, monkeypatch, tmp_path):
    ci_bytes = size(reload(folder, torch.bfloat16))
    theirs = _as("bob", monkeypatch, tmp_path)
    bob = reload(theirs, torch.bfloat16)
    assert size(bob) != ci_bytes
    fails("ex04_q4", "`fitted_bytes` is", fitted=bob, fitted_bytes=ci_bytes, folder=theirs)
    fails("ex04_q4", "LoRA layers are not the ones", fitted=reload(folder, torch.bfloat16), fitted_bytes=ci_bytes,
          folder=theirs)
