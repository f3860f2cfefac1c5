"""Every exercise check: the solution passes, the untouched stub fails, and plausible wrong answers fail
with feedback that says what is wrong. Real objects built from the shipped tiny model."""
from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch
from check_assertions import fails, passes
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors import safe_open
from safetensors.torch import load_file

from course_utils import (
    complete,
    device_name,
    list_files,
    load_base_model,
    load_tokenizer,
    shipped_adapter,
)
from course_utils.grading.checks import (
    CHECKS,
    MIXED_ROWS,
    NER_SENTENCE,
    CheckFailed,
    broken_rank_folder,
    check,
    given_adapter,
    memory_budget,
    mixed_prompts,
    stub_message,
    teammate_update,
)
from course_utils.maintenance.repo import REPO
from course_utils.tasks import ner_prompt, sentiment_prompt
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


def test_registry_matches_the_solution_notebooks():
    import nbformat

    from course_utils.grading.student_copies import (
        check_id_of,
        is_check,
        nbgrader_meta,
        solution_paths,
    )

    found = {}
    for path in solution_paths():
        for cell in nbformat.read(path, as_version=4).cells:
            if is_check(cell):
                found[check_id_of(cell)] = nbgrader_meta(cell)["points"]
    assert found == {k: c.points for k, c in CHECKS.items()}


@pytest.mark.parametrize("check_id", sorted(CHECKS))
def test_untouched_stub_fails_with_the_stored_message(check_id):
    spec = CHECKS[check_id]
    kwargs = {name: None for name in spec.answers}
    with pytest.raises(CheckFailed) as info:
        check(check_id, **kwargs)
    assert str(info.value) == stub_message(check_id)
    assert info.value._render_traceback_() == [stub_message(check_id)]


def test_unknown_check_and_missing_argument():
    fails("ex99_q1", "no such check")
    fails("ex01_q1", r"pass your answer as model=")


def test_object_that_breaks_a_check_gives_one_line():
    adapters = str(REPO / "course_utils" / "assets" / "adapters")
    fails("ex01_q3", "should be a list", files="README.md", folder=adapters)
    fails("ex02_q1", "not a PeftModel", reloaded="model", folder=adapters, reference=None)


# ---------------------------------------------------------------------------------------- exercise 1
class AlwaysEqual:
    def __eq__(self, other):
        return True

    __hash__ = object.__hash__


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


# ---------------------------------------------------------------------------------------- exercise 2
def test_ex02_q1(saved, capsys):
    model, folder = saved
    passes("ex02_q1", capsys, reloaded=reload(folder), folder=folder, reference=model)
    passes("ex02_q1", capsys, reloaded=reload(str(folder), adapter_name="mine"), folder=folder, reference=model)
    fails("ex02_q1", "require grad, like the model you built", reloaded=copy.deepcopy(model), folder=folder,
          reference=model)
    fails("ex02_q1", "very model you saved", reloaded=model, folder=folder, reference=model)
    fails("ex02_q1", "does not hold the weights", reloaded=lora(init=True), folder=folder, reference=model)
    fails("ex02_q1", "does not hold the weights", reloaded=reload(shipped_adapter("spanish_sentiment")),
          folder=folder, reference=model)
    fails("ex02_q1", "not a PeftModel", reloaded=load_base_model(), folder=folder, reference=model)
    fails("ex02_q1", "require grad", reloaded=reload(folder, is_trainable=True), folder=folder, reference=model)
    own = given_adapter(folder.parent / "own", seed=2)  # wrapping its base again would change the fixture's
    fails("ex02_q1", "shares weights", reloaded=PeftModel.from_pretrained(own.get_base_model(), str(folder.parent / "own"),
                                                                           adapter_name="again"),
          folder=folder.parent / "own", reference=own)


def _multi():
    return get_peft_model(load_base_model(), LoraConfig(r=8, target_modules=["c_attn"]))


def test_ex02_q2(saved, capsys):
    model, folder = saved
    ok = {"folder": folder, "reference": model}
    good = _multi()
    good.load_adapter(folder, adapter_name="reloaded")
    good.set_adapter("reloaded")
    passes("ex02_q2", capsys, multi=good, given=good, **ok)
    positional = _multi()
    positional.load_adapter(str(folder), "reloaded")
    positional.base_model.set_adapter("reloaded")
    passes("ex02_q2", capsys, multi=positional, given=positional, **ok)
    given = _multi()
    rebuilt = reload(folder, adapter_name="reloaded")
    fails("ex02_q2", "is a new model", multi=rebuilt, given=given, **ok)
    inactive = _multi()
    inactive.load_adapter(folder, adapter_name="reloaded")
    fails("ex02_q2", "active adapter is 'default'.*does not activate", multi=inactive, given=inactive, **ok)
    other_name = _multi()
    other_name.load_adapter(folder, adapter_name="mine")
    fails("ex02_q2", r"no adapter named 'reloaded' \(it has \['default', 'mine'\]\)", multi=other_name,
          given=other_name, **ok)
    nothing = _multi()
    fails("ex02_q2", "no adapter named 'reloaded'", multi=nothing, given=nothing, **ok)
    wrong_weights = _multi()
    wrong_weights.add_adapter("reloaded", LoraConfig(r=8, target_modules=["c_attn", "c_fc"], init_lora_weights=False))
    wrong_weights.set_adapter("reloaded")
    fails("ex02_q2", "does not hold the weights", multi=wrong_weights, given=wrong_weights, **ok)
    fails("ex02_q2", "not a PeftModel", multi=load_base_model(), given=None, **ok)


def test_ex02_q3(saved, capsys):
    model, folder = saved
    spanish = shipped_adapter("spanish_sentiment")
    passes("ex02_q3", capsys, trainable=reload(spanish, is_trainable=True))
    by_hand = reload(spanish, adapter_name="es")
    for name, p in by_hand.named_parameters():
        p.requires_grad = "lora_" in name
    passes("ex02_q3", capsys, trainable=by_hand)
    fails("ex02_q3", "0 LoRA parameters require grad", trainable=reload(spanish))
    everything = reload(spanish, is_trainable=True)
    for p in everything.parameters():
        p.requires_grad = True
    fails("ex02_q3", "base-model parameters require grad", trainable=everything)
    fails("ex02_q3", "does not hold the weights of the shipped", trainable=copy.deepcopy(model))
    fails("ex02_q3", "does not hold the weights of the shipped", trainable=reload(folder, is_trainable=True))
    fails("ex02_q3", "does not hold the weights of the shipped",
          trainable=reload(shipped_adapter("english_ner"), is_trainable=True))
    half = reload(spanish, is_trainable=True)
    next(p for n, p in half.named_parameters() if "lora_B" in n).requires_grad = False
    fails("ex02_q3", "1 of the 32 LoRA tensors are still frozen", trainable=half)


def test_ex02_q4(saved, capsys, tok):
    from course_utils import compare_logits

    model, folder = saved
    ok = {"folder": folder, "reference": model}

    def by_compare(saved, candidate):
        return compare_logits(saved, candidate, tok).ok and not compare_logits(load_base_model(), saved, tok).ok

    def by_disable(saved, candidate):
        same = compare_logits(saved, candidate, tok).ok
        with saved.disable_adapter():
            base = load_base_model()
            matters = not compare_logits(base, saved, tok).ok
        matters = matters or not compare_logits(load_base_model(), saved, tok).ok
        return bool(np.bool_(same and matters))

    passes("ex02_q4", capsys, proves_reload=by_compare, **ok)
    passes("ex02_q4", capsys, proves_reload=by_disable, **ok)
    fails("ex02_q4", "True for the plain base model", proves_reload=lambda s, c: True, **ok)
    fails("ex02_q4", "False for a real reload", proves_reload=lambda s, c: False, **ok)
    fails("ex02_q4", "not a LogitCheck", proves_reload=lambda s, c: compare_logits(s, c, tok), **ok)
    fails("ex02_q4", "saved adapter is untrained",
          proves_reload=lambda s, c: compare_logits(s, c, tok).ok, **ok)
    fails("ex02_q4", "True for a fresh, untrained adapter",
          proves_reload=lambda s, c: isinstance(c, type(s)) or compare_logits(s, c, tok).ok, **ok)
    fails("ex02_q4", "should be a function", proves_reload=True, **ok)


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


# ---------------------------------------------------------------------------------------- exercise 5
def _both(*adapters, names=None):
    """Exercise 5's model: the Spanish adapter first, then the NER one (``_two`` in the other order)."""
    return _two(*(adapters or ("spanish_sentiment", "english_ner")), names=names)


def test_ex05_q1(capsys):
    passes("ex05_q1", capsys, model=_both())
    passes("ex05_q1", capsys, model=_both("english_ner", "spanish_sentiment"))
    one = PeftModel.from_pretrained(load_base_model(), shipped_adapter("spanish_sentiment"),
                                    adapter_name="spanish_sentiment")
    fails("ex05_q1", "no adapter named 'english_ner'", model=one)
    fails("ex05_q1", "no adapter named 'spanish_sentiment'", model=_both(names=("default", "english_ner")))
    fails("ex05_q1", "does not hold the weights of the shipped english_ner",
          model=_both("spanish_sentiment", "spanish_sentiment", names=("spanish_sentiment", "english_ner")))
    fails("ex05_q1", "does not hold the weights of the shipped spanish_sentiment",
          model=_both("english_ner", "english_ner", names=("spanish_sentiment", "english_ner")))
    fails("ex05_q1", "not a PeftModel", model=load_base_model())


def test_ex05_q2(capsys, tok):
    model = _both()
    model.set_adapter("english_ner")
    out = complete(model, tok, ner_prompt(NER_SENTENCE))
    passes("ex05_q2", capsys, ner_output=out, model=model)
    passes("ex05_q2", capsys, ner_output=complete(model, tok, [ner_prompt(NER_SENTENCE)])[0] + "\n", model=model)
    fails("ex05_q2", "not what english_ner writes",
          ner_output=complete(model, tok, sentiment_prompt("La comida fue excelente.")), model=model)
    with model.disable_adapter():
        base_out = complete(model, tok, ner_prompt(NER_SENTENCE))
    fails("ex05_q2", "not what english_ner writes", ner_output=base_out, model=model)
    spanish = _both()
    fails("ex05_q2", "active adapter is 'spanish_sentiment'",
          ner_output=complete(spanish, tok, ner_prompt(NER_SENTENCE)), model=spanish)
    fails("ex05_q2", "should be the generated text", ner_output=[out], model=model)
    fails("ex05_q2", "should be the generated text", ner_output=AlwaysEqual(), model=model)


def test_ex05_q3(tmp_path, capsys):
    model = _both()
    root = tmp_path / "both"
    fails("ex05_q3", "nothing was saved", saved_root=root)
    model.save_pretrained(root)
    passes("ex05_q3", capsys, saved_root=root)
    one_by_one = tmp_path / "one_by_one"
    for name in ("spanish_sentiment", "english_ner"):
        model.save_pretrained(one_by_one, selected_adapters=[name])
    passes("ex05_q3", capsys, saved_root=str(one_by_one))
    only_active = tmp_path / "only"
    model.save_pretrained(only_active, selected_adapters=["spanish_sentiment"])
    fails("ex05_q3", "no english_ner/adapter_config.json", saved_root=only_active)
    tampered = tmp_path / "tampered"
    model.save_pretrained(tampered)
    (tampered / "english_ner" / "adapter_model.safetensors").write_bytes(
        (root / "spanish_sentiment" / "adapter_model.safetensors").read_bytes())
    fails("ex05_q3", "english_ner adapter reloaded from english_ner/ gives different logits", saved_root=tampered)
    no_weights = tmp_path / "noweights"
    model.save_pretrained(no_weights)
    (no_weights / "spanish_sentiment" / "adapter_model.safetensors").unlink()
    fails("ex05_q3", "no adapter_model.safetensors", saved_root=no_weights)
    flat = tmp_path / "flat"
    model.save_pretrained(flat, selected_adapters=["spanish_sentiment"])
    fails("ex05_q3", "no spanish_sentiment/adapter_config.json", saved_root=flat / "spanish_sentiment")
    fails("ex05_q3", "should be the folder's path", saved_root=model)


def _single_runs(model, tok, prompts, names):
    out = []
    for name, prompt in zip(names, prompts):
        if name == "__base__":
            with model.disable_adapter():
                out.append(complete(model, tok, prompt))
        else:
            model.set_adapter(name)
            out.append(complete(model, tok, prompt))
    return out


def test_ex05_q4(capsys, tok):
    model = _both()
    prompts, names = mixed_prompts(), [n for n, _ in MIXED_ROWS]
    mixed = complete(model, tok, prompts, adapter_names=names)
    single = _single_runs(model, tok, prompts, names)
    passes("ex05_q4", capsys, mixed=mixed, single=single)
    base = load_base_model()  # the base row from a separate plain model instead of disable_adapter
    alt_single = single[:2] + [complete(base, tok, prompts[2])]
    passes("ex05_q4", capsys, mixed=tuple(mixed), single=alt_single)
    model.set_adapter("english_ner")
    one_adapter = complete(model, tok, prompts)
    fails("ex05_q4", "`mixed` row 1 is not what spanish_sentiment writes", mixed=one_adapter, single=single)
    fails("ex05_q4", "`mixed` row 0", mixed=complete(model, tok, prompts, adapter_names=names[::-1]), single=single)
    fails("ex05_q4", "`single` row 2 is not what __base__ writes", mixed=mixed, single=single[:2] + [one_adapter[2]])
    fails("ex05_q4", "has 2 rows", mixed=mixed[:2], single=single)
    fails("ex05_q4", "should be a list of 3 texts", mixed=" ".join(mixed), single=single)
    fails("ex05_q4", "should hold the generated texts", mixed=mixed, single=[AlwaysEqual()] * 3)


def test_teammate_update_waits_for_the_saved_folder(tmp_path):
    assert teammate_update(None) is False and teammate_update(tmp_path) is False
    assert list(tmp_path.iterdir()) == []
