"""Exercise 1 (saving an adapter): its checks accept right answers, and reject wrong ones with feedback that says
what is wrong. Real objects built from the shipped tiny model, on learner 'ci''s data (and 'bob''s, to show that
one learner's answer fails for another)."""
from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from check_assertions import AlwaysEqual, fails, passes
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors import safe_open
from safetensors.torch import load_file

from course_utils import list_files, load_base_model, load_tokenizer, tensor_table
from course_utils.grading.evidence import record_given
from course_utils.grading.questions.ex01 import adapter_task, task_for_seed, teammate_update
from course_utils.learner import learner_seed
from course_utils.training import train_demo_adapter

CI = task_for_seed(learner_seed("ci"))   # r=16, lora_alpha=16, c_attn


class SameAsAnything(str):
    """A str that claims to equal anything."""

    def __eq__(self, other):
        return True

    __hash__ = str.__hash__


def lora(task=CI, init=False, name="default", seed=0, **extra):
    torch.manual_seed(seed)
    kwargs = {"r": task.r, "lora_alpha": task.lora_alpha, "target_modules": list(task.targets),
              "init_lora_weights": init, **extra}
    return get_peft_model(load_base_model(), LoraConfig(**kwargs), adapter_name=name)


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.fixture(scope="module")
def ex01(tmp_path_factory, tok):
    """Exercise 1 up to Q2 for learner ci: the task's adapter, trained, saved into a folder."""
    model = lora(init=True)
    train_demo_adapter(model, tok, steps=2, seed=0, progress=False)
    folder = tmp_path_factory.mktemp("ex01") / "ex01_adapter"
    model.save_pretrained(folder)
    return model, folder


def test_adapter_task_prints_the_learners_task(capsys):
    assert adapter_task("ci") == CI
    assert "r=16, lora_alpha=16, target_modules=['c_attn']" in capsys.readouterr().out
    assert task_for_seed(learner_seed("bob")) != CI


# ---------------------------------------------------------------------------------------- Q1
def _unfrozen():
    model = lora()
    for p in model.parameters():
        p.requires_grad = True
    return model


Q1_WRONG = {
    "rank of the lesson": (lambda: lora(task=CI.__class__(8, 16, CI.targets)), "your task .* asks for r=16"),
    "layer 0 only": (lambda: lora(layers_to_transform=[0]), r"3 of the 4 targeted modules carry no LoRA, e.g. "
                                                            r"transformer\.h\.1\.attn\.c_attn.*every transformer block"),
    "rank_pattern": (lambda: lora(rank_pattern={"h.1.attn.c_attn": 4}), r"h\.1\.attn\.c_attn has rank 4.*rank_pattern"),
    "r right, rank_pattern gives every module another rank": (lambda: lora(rank_pattern={"c_attn": 12}),
                                                             r"h\.0\.attn\.c_attn has rank 12.*asks for r=16"),
    "alpha_pattern": (lambda: lora(alpha_pattern={"h.2.attn.c_attn": 64}), r"h\.2\.attn\.c_attn scales its update by 4"),
    "lora_alpha=0": (lambda: lora(lora_alpha=0), "scales its update by 0"),
    "another lora_alpha": (lambda: lora(lora_alpha=32), r"scales its update by 2, not lora_alpha / r = 16/16"),
    "use_rslora": (lambda: lora(use_rslora=True), "scales its update by 4.*use_rslora"),
    "an extra target": (lambda: lora(target_modules=["c_attn", "c_fc"]), r"also sits on 4 module.*mlp\.c_fc"),
    "another target": (lambda: lora(target_modules=["c_proj"]), "4 of the 4 targeted modules carry no LoRA"),
    "untrained": (lambda: lora(init=True), "does not change the output yet"),
    "DoRA": (lambda: lora(use_dora=True), "DoRA"),
    "base frozen": (_unfrozen, "base stays frozen"),
    "plain base": (load_base_model, "not a PeftModel"),
    "always equal": (AlwaysEqual, "not a PeftModel"),
}


@pytest.mark.parametrize("case", list(Q1_WRONG))
def test_ex01_q1_wrong(case):
    make, message = Q1_WRONG[case]
    fails("ex01_q1", message, model=make())


def test_ex01_q1_right(ex01, capsys):
    passes("ex01_q1", capsys, model=ex01[0])  # trained, as lesson 1 does
    passes("ex01_q1", capsys, model=lora())  # random init: also changes the output
    passes("ex01_q1", capsys, model=lora(name="mine", r=np.int64(16)))
    passes("ex01_q1", capsys, model=lora(target_modules=r".*\.attn\.c_attn"))  # a regex naming the same layers
    # the effective rank counts, as for alpha_pattern: every module gets the task's rank through rank_pattern
    passes("ex01_q1", capsys, model=lora(r=12, rank_pattern={"c_attn": 16}))
    passes("ex01_q1", capsys, model=lora(lora_alpha=8, alpha_pattern={"c_attn": 16}))


def test_ex01_q1_is_per_learner(monkeypatch, capsys):
    bob = task_for_seed(learner_seed("bob"))
    monkeypatch.setenv("COURSE_LEARNER", "bob")
    fails("ex01_q1", "4 of the 4 targeted modules carry no LoRA", model=lora())  # ci's adapter: other targets
    passes("ex01_q1", capsys, model=lora(task=bob))


# ---------------------------------------------------------------------------------------- Q2
def _saved(tmp_path, model, name, **kwargs):
    target = tmp_path / name
    model.save_pretrained(target, **kwargs)
    return target


def test_ex01_q2_right(ex01, tmp_path, capsys):
    model, folder = ex01
    passes("ex01_q2", capsys, folder=folder, model=model)
    passes("ex01_q2", capsys, folder=str(folder), model=model)
    passes("ex01_q2", capsys, folder=_saved(tmp_path, model, "sel", selected_adapters=["default"]), model=model)
    passes("ex01_q2", capsys, folder=_saved(tmp_path, model, "bin", safe_serialization=False), model=model)


def _full(tmp_path, model):
    model.get_base_model().save_pretrained(tmp_path / "full")
    return tmp_path / "full"


def _config_only(tmp_path, model, tok=None):
    model.peft_config["default"].save_pretrained(tmp_path / "config_only")
    return tmp_path / "config_only"


def _retrained(tmp_path, model, tok):
    other = copy.deepcopy(model)
    train_demo_adapter(other, tok, steps=1, seed=1, progress=False)
    return _saved(tmp_path, other, "retrained")


Q2_WRONG = {
    "nothing saved": (lambda t, m, tok: t / "nope", "nothing was saved"),
    "another model's adapter": (lambda t, m, tok: _saved(t, lora(seed=5), "other"), "does not hold the weights of"),
    "trained further after saving": (_retrained, "does not hold the weights of"),
    "the full model": (lambda t, m, tok: _full(t, m), "full model"),
    "a named adapter in a subfolder": (lambda t, m, tok: _saved(t, lora(name="mine"), "named"),
                                       r"subfolder \(mine/\)"),
    "the config only": (_config_only, "no adapter_model.safetensors in the folder"),
    "a number": (lambda t, m, tok: 1, "should be the folder's path"),
    "an always-equal str": (lambda t, m, tok: SameAsAnything("saved/ex01_adapter"), "a type the notebook made"),
}


@pytest.mark.parametrize("case", list(Q2_WRONG))
def test_ex01_q2_wrong(case, ex01, tmp_path, tok):
    make, message = Q2_WRONG[case]
    fails("ex01_q2", message, folder=make(tmp_path, ex01[0], tok), model=ex01[0])


# ---------------------------------------------------------------------------------------- the teammate
@pytest.fixture(scope="module")
def ex01_updated(ex01, tmp_path_factory):
    """The folder after the teammate's update (a copy: the Q2 tests keep the untouched folder)."""
    model, folder = ex01
    updated = tmp_path_factory.mktemp("ex01u") / "ex01_adapter"
    shutil.copytree(folder, updated)
    assert teammate_update(updated)
    return model, updated


def test_teammate_update_is_random_and_only_readable_from_the_folder(ex01, tmp_path):
    model, folder = ex01
    notes = set()
    for i in range(2):
        copy_ = tmp_path / str(i)
        shutil.copytree(folder, copy_)
        teammate_update(copy_)
        notes |= {f for f in list_files(copy_) if f.startswith("notes_")}
    assert len(notes) == 2
    as_bin = _saved(tmp_path, model, "bin", safe_serialization=False)
    assert teammate_update(as_bin) and "adapter_model.safetensors" not in list_files(as_bin)


def test_teammate_update_waits_for_the_saved_folder(tmp_path):
    assert teammate_update(None) is False and teammate_update(tmp_path) is False
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------- Q3
def test_ex01_q3_right(ex01_updated, capsys):
    _, folder = ex01_updated
    passes("ex01_q3", capsys, files=sorted(list_files(folder)), folder=folder)
    passes("ex01_q3", capsys, files=tuple(p.name for p in folder.iterdir()), folder=folder)
    passes("ex01_q3", capsys, files={p.relative_to(folder) for p in folder.iterdir()}, folder=folder)
    passes("ex01_q3", capsys, files=[f"./{n}" for n in list_files(folder)], folder=folder)  # relative, spelled ./


Q3_WRONG = {
    "from memory": (lambda a: ["README.md", "adapter_config.json", "adapter_model.safetensors"],
                    "1 of the 4 files .* missing.* not from memory"),
    "a file that is not there": (lambda a: a + ["adapter_model.bin"], "not in the folder: adapter_model.bin"),
    "a name twice": (lambda a: a + a[:1], "names a file twice"),
    "one name": (lambda a: "adapter_model.safetensors", "should be a list"),
    "full paths": (lambda a: None, "relative to the folder"),
    "always-equal items": (lambda a: [AlwaysEqual()], "should hold names"),
    "always-equal str": (lambda a: SameAsAnything("adapter_model.safetensors"), "a type the notebook made"),
    "empty": (lambda a: [], "4 of the 4 files .* missing"),
}


@pytest.mark.parametrize("case", list(Q3_WRONG))
def test_ex01_q3_wrong(case, ex01_updated):
    _, folder = ex01_updated
    make, message = Q3_WRONG[case]
    files = make(sorted(list_files(folder)))
    if case == "full paths":
        files = [str(p) for p in folder.iterdir()]
    fails("ex01_q3", message, files=files, folder=folder)


# ---------------------------------------------------------------------------------------- Q4
def summary(path):
    """The solution's adapter_summary."""
    path = Path(path)
    config = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    if (path / "adapter_model.safetensors").is_file():
        shapes = [shape for _, _, shape in tensor_table(path / "adapter_model.safetensors")]
    else:
        shapes = [t.shape for t in torch.load(path / "adapter_model.bin", weights_only=True).values()]
    return {"r": config["r"], "n_tensors": len(shapes), "n_numbers": sum(math.prod(s) for s in shapes)}


def summary_by_tensors(path):
    """Another right way: the rank from lora_A's shape, numpy integers."""
    path = Path(path)
    if (path / "adapter_model.safetensors").is_file():
        with safe_open(str(path / "adapter_model.safetensors"), "pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has keys(), no __iter__
    else:
        state = torch.load(path / "adapter_model.bin", weights_only=True)
    rank = next(t.shape[0] for k, t in state.items() if "lora_A" in k)
    return {"n_numbers": np.int64(sum(t.numel() for t in state.values())), "n_tensors": len(state),
            "r": torch.tensor(rank)}


def test_ex01_q4_right(ex01, capsys):
    passes("ex01_q4", capsys, adapter_summary=summary, folder=ex01[1])
    passes("ex01_q4", capsys, adapter_summary=summary_by_tensors, folder=str(ex01[1]))


CI_NUMBERS = {"r": 16, "n_tensors": 8, "n_numbers": 8 * 16 * (128 + 384) // 2}


def _bytes(path):
    found = summary(path)
    return {**found, "n_numbers": 4 * found["n_numbers"]}


def _safetensors_only(path):
    path = Path(path)
    table = tensor_table(path / "adapter_model.safetensors")
    rank = json.loads((path / "adapter_config.json").read_text())["r"]
    return {"r": rank, "n_tensors": len(table), "n_numbers": sum(math.prod(s) for _, _, s in table)}


def _from_config(path):
    """Rebuilds the adapter from its config and counts that, never opening the weights file."""
    config = LoraConfig.from_pretrained(str(path))
    state = get_peft_model_state_dict(get_peft_model(load_base_model(), config))
    return {"r": config.r, "n_tensors": len(state), "n_numbers": sum(t.numel() for t in state.values())}


def _spoils(path):
    """Reads the right numbers, then deletes the weights file of the folders the check saved."""
    found = summary(path)
    if Path(path).name != "ex01_adapter":
        for p in Path(path).glob("adapter_model.*"):
            p.unlink()
    return found


Q4_WRONG = {
    "rebuilt from the config, weights file unread": (lambda: _from_config,
                                                     r"(lacks tensors|holds an extra tensor).* it says n_tensors=\d+, "
                                                     r"but the folder holds"),
    "deletes the weights file": (lambda: _spoils, "changed the folder it was given"),
    "a number": (lambda: 8, "should be a function, not a int"),
    "ci's numbers typed in": (lambda: lambda p: dict(CI_NUMBERS), r"on a safetensors folder it says r=16, but"),
    "safetensors only": (lambda: _safetensors_only,
                         r"raised FileNotFoundError.* on a \.bin folder"),
    "bytes, not numbers": (lambda: _bytes, "on your folder it says n_numbers=131072, but the folder holds 32768"),
    "lora_A only": (lambda: lambda p: {**summary(p), "n_tensors": summary(p)["n_tensors"] // 2},
                    "it says n_tensors=4, but the folder holds 8"),
    "a tuple": (lambda: lambda p: tuple(summary(p).values()), "returned a tuple, not a dict"),
    "floats": (lambda: lambda p: {k: float(v) for k, v in summary(p).items()}, "whole number .*float"),
    "str values": (lambda: lambda p: {k: str(v) for k, v in summary(p).items()}, "whole number .*str"),
    "always equal": (lambda: lambda p: AlwaysEqual(), "on your folder it returned a AlwaysEqual, not a dict"),
    "always-equal str": (lambda: lambda p: SameAsAnything("8"), "a type the notebook made"),
    "a missing key": (lambda: lambda p: {"r": summary(p)["r"]}, "not a dict with the keys r, n_tensors, n_numbers"),
    "always-equal numbers": (lambda: lambda p: {"r": AlwaysEqual(), "n_tensors": 8, "n_numbers": 1},
                             "should be a whole number .*not a AlwaysEqual"),
}


@pytest.mark.parametrize("case", list(Q4_WRONG))
def test_ex01_q4_wrong(case, ex01, tmp_path):
    make, message = Q4_WRONG[case]
    mine = tmp_path / "ex01_adapter"  # a copy: a wrong function may spoil the folder
    shutil.copytree(ex01[1], mine)
    fails("ex01_q4", message, adapter_summary=make(), folder=mine)


def test_ex01_q4_numbers_of_ci_fail_for_bob(monkeypatch, tmp_path, capsys):
    """A function that returns learner ci's numbers (read from ci's printed output) fails for bob."""
    monkeypatch.setenv("COURSE_LEARNER", "bob")
    bob_folder = _saved(tmp_path, lora(task=task_for_seed(learner_seed("bob"))), "bob")
    fails("ex01_q4", "on your folder it says r=16, but the folder holds 8", adapter_summary=lambda p: dict(CI_NUMBERS),
          folder=bob_folder)
    passes("ex01_q4", capsys, adapter_summary=summary, folder=bob_folder)


def test_ex01_q4_without_a_folder(ex01):
    fails("ex01_q4", "should be the folder's path", adapter_summary=summary, folder=None)


# ---------------------------------------------------------------------------------------- Q5
@pytest.fixture()
def q5(ex01, ex01_updated, capsys):
    """Q2's check on the model as saved, then the teammate's snapshot, as the notebook's cells make them."""
    model, folder = ex01_updated
    passes("ex01_q2", capsys, folder=ex01[1], model=model)
    record_given("ex01_given_teammate", folder=folder)
    return model, folder


def _changed(model, folder):
    in_file = load_file(folder / "adapter_model.safetensors")
    params = {n.replace(".default", ""): p for n, p in model.named_parameters() if "lora_" in n}
    return [n for n, t in in_file.items() if not torch.equal(t, params[n].detach())]


def test_ex01_q5_right(q5, capsys):
    model, folder = q5
    right = _changed(model, folder)
    passes("ex01_q5", capsys, changed=right, folder=folder, model=model)
    with safe_open(str(folder / "adapter_model.safetensors"), "pt") as f:  # safe_open, model-parameter names
        as_params = {n.replace(".lora_A.", ".lora_A.default.").replace(".lora_B.", ".lora_B.default.")
                     for n in f.keys() if n in right}  # noqa: SIM118 - safe_open has keys(), no __iter__
    passes("ex01_q5", capsys, changed=as_params, folder=str(folder), model=model)
    base_names = [n for n, _ in model.get_base_model().named_parameters()  # names inside the base model
                  if n.replace(".default", "") in {r.removeprefix("base_model.model.") for r in right}]
    passes("ex01_q5", capsys, changed=base_names, folder=folder, model=model)
    passes("ex01_q5", capsys, changed=[r.removeprefix("base_model.model.") for r in right], folder=folder, model=model)
    passes("ex01_q5", capsys, changed=["base_model.model." + r for r in right], folder=folder, model=model)


def test_ex01_q5_teammate_did_not_run(ex01, capsys, tmp_path):
    """A teammate's cell that changed nothing (e.g. the learner's own teammate_update ran) gives no points to []."""
    model, folder = ex01
    passes("ex01_q2", capsys, folder=folder, model=model)
    untouched = tmp_path / "untouched"
    shutil.copytree(folder, untouched)
    record_given("ex01_given_teammate", folder=untouched)
    fails("ex01_q5", "the teammate's update did not run.*run the notebook from Q2", changed=[], folder=untouched,
          model=model)


def _given_cell(grade_id):
    path = Path(__file__).parents[1] / "exercises/solutions/Exercise_01_save_adapter.ipynb"
    notebook = json.loads(path.read_text(encoding="utf-8"))
    return next("".join(c["source"]) for c in notebook["cells"]
                if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)


def test_the_teammate_cell_runs_the_course_code_whatever_the_kernel_holds(ex01, tmp_path):
    """Rebinding teammate_update or record_given in an earlier answer cell changes nothing: the cell imports them."""
    _, folder = ex01
    mine = tmp_path / "mine"
    shutil.copytree(folder, mine)
    calls = []
    kernel = {"folder": mine, "teammate_update": lambda path: True,
              "record_given": lambda *a, **k: calls.append(a)}
    exec(_given_cell("ex01_given_teammate"), kernel)  # noqa: S102 - the notebook's own locked cell
    assert calls == [] and any(n.startswith("notes_") for n in list_files(mine))


def _saved_over(model, folder, tmp_path):
    """Save the model over (a copy of) the teammate's folder, then compare what both hold now: nothing differs."""
    again = tmp_path / "again"
    shutil.copytree(folder, again)
    model.save_pretrained(again)
    return _changed(model, again), again, model


def _loaded_into(model, folder, tmp_path):
    """Load the teammate's file into (a copy of) the model, then compare what both hold now: nothing differs."""
    loaded = copy.deepcopy(model)
    set_peft_model_state_dict(loaded, load_file(folder / "adapter_model.safetensors"))
    return _changed(loaded, folder), folder, loaded


def _against_fresh(model, folder, tmp_path):
    return _changed(lora(), folder), folder, model


Q5_WRONG = {
    "every tensor": (lambda m, f, t: (list(load_file(f / "adapter_model.safetensors")), f, m),
                     "of your tensors are the same in the teammate's file and in the model you saved"),
    "one missing": (lambda m, f, t: (_changed(m, f)[1:], f, m), "1 changed tensor.* missing from your answer"),
    "nothing": (lambda m, f, t: ([], f, m), "missing from your answer"),
    "a bare word": (lambda m, f, t: (["lora_A"], f, m), "not tensors of the weights file"),
    "a count": (lambda m, f, t: (len(_changed(m, f)), f, m), "should be a list"),
    "saved over the file, then 'nothing changed'": (_saved_over, "missing from your answer.*saved over"),
    "loaded the file into the model, then 'nothing changed'": (_loaded_into,
                                                               "missing from your answer.*no longer holds what you saved"),
    "compared with a fresh adapter": (_against_fresh, "are the same in the teammate's file"),
    "always-equal str": (lambda m, f, t: (SameAsAnything("x"), f, m), "a type the notebook made"),
}


@pytest.mark.parametrize("case", list(Q5_WRONG))
def test_ex01_q5_wrong(case, q5, tmp_path):
    model, folder = q5
    make, message = Q5_WRONG[case]
    changed, where, now = make(model, folder, tmp_path)
    fails("ex01_q5", message, changed=changed, folder=where, model=now)
