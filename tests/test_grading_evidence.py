"""course_utils.grading.evidence: answers written as data in the kernel, read back and rebuilt by the checker,
which refuses evidence that does not fit the course's model before it allocates anything large."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model

from course_utils import load_base_model
from course_utils.grading import evidence
from course_utils.grading.check import verdict
from course_utils.grading.evidence import Evidence, EvidenceError, Opaque


class Always(str):
    def __eq__(self, other):
        return True

    __hash__ = str.__hash__


def test_values_round_trip_and_notebook_types_are_marked(tmp_path):
    answers = {"n": 24, "x": 0.5, "s": "text", "names": ["a", Path("b")], "flags": {True, False},
               "d": {"k": (1, 2)}, "dtype": torch.bfloat16, "none": None, "fake": Always("x"),
               "t": torch.tensor(3), "f": print}
    ev = Evidence(evidence.write("q", tmp_path / "q", answers))
    assert ev.answers(["n", "x", "s", "none"]) == {"n": 24, "x": 0.5, "s": "text", "none": None}
    assert ev.value("names") == ["a", Path("b")] and ev.value("flags") == {True, False}
    assert ev.value("d") == {"k": (1, 2)} and ev.value("dtype") is torch.bfloat16 and ev.value("t") == 3
    assert ev.value("fake") == Opaque("Always", foreign=True)
    assert ev.value("f").function


def test_a_model_is_rebuilt_with_its_tensors_flags_and_relations(tmp_path):
    torch.manual_seed(0)
    model = get_peft_model(load_base_model(), LoraConfig(r=4, target_modules=["c_attn"], init_lora_weights=False))
    model.base_model.model.transformer.h[0].mlp.c_fc.to(torch.bfloat16)
    ev = Evidence(evidence.write("q", tmp_path / "q", {"a": model, "b": model, "c": load_base_model()}))
    rebuilt = ev.value("a")
    assert rebuilt is ev.value("b") and ev.same("a", "b") and not ev.same("a", "c")
    mine, theirs = model.state_dict(), rebuilt.state_dict()
    assert set(mine) == set(theirs) and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert [p.requires_grad for p in model.parameters()] == [p.requires_grad for p in rebuilt.parameters()]
    assert rebuilt.base_model.model.transformer.h[0].mlp.c_fc.weight.dtype == torch.bfloat16


def _forged(tmp_path, adapters, question="ex01_q1", answer="model"):
    folder = tmp_path / question
    evidence.write(question, folder, {answer: load_base_model()})
    info_path = folder / "models" / "m1" / "model.json"
    info = json.loads(info_path.read_text())
    info.update({"class": "PeftModel", "adapters": adapters, "active_adapters": list(adapters)})
    info_path.write_text(json.dumps(info))
    return folder


@pytest.mark.parametrize("adapters, reason", [
    ({"default": {"r": 4194304, "target_modules": ["c_attn"]}}, "r=4194304"),
    ({"default": {"r": 8, "target_modules": ["c_attn"], "rank_pattern": {"c_attn": 4194304}}}, "rank_pattern"),
    ({"default": {"r": 8, "target_modules": ["c_attn"], "layer_replication": [[0, 4]] * 100}}, "layer_replication"),
    ({f"a{i}": {"r": 8, "target_modules": ["c_attn"]} for i in range(50)}, "50 adapters"),
    ({"default": {"r": 4, "target_modules": ["c_attn", "c_proj"]}}, "do not match its adapter configs"),
])
def test_evidence_beyond_the_course_model_is_refused_before_it_is_built(tmp_path, adapters, reason):
    start = time.perf_counter()
    result = verdict(_forged(tmp_path, adapters), "ex01_q1")
    assert not result.passed and reason in result.line and "\n" not in result.line, result.line
    assert time.perf_counter() - start < 30  # refused, not built (a built rank-4M adapter takes minutes and GiBs)


def test_a_forged_lora_config_answer_is_bounded_too(tmp_path):
    folder = tmp_path / "ex03_q2"
    evidence.write("ex03_q2", folder, {"config": LoraConfig(r=8, target_modules=["c_attn"])})
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["answers"]["config"]["v"]["rank_pattern"] = {"c_attn": 4194304}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    result = verdict(folder, "ex03_q2")
    assert not result.passed and "beyond the course's model" in result.line


@pytest.mark.parametrize("edit, reason", [
    (lambda m: m.update(answers={"model": {"t": "path", "original": "x", "exists": True, "snapshot": "../../etc"}}),
     "outside its folder"),
    (lambda m: m.update(format=99), "not in the course's format"),
    (lambda m: m.update(question="ex02_q1"), "belongs to another question"),
    (lambda m: m["answers"].update(model={"t": "model", "dir": "/etc"}), "outside its folder"),
    (lambda m: m["answers"].update(model={"t": "weird"}), "an entry the course does not write"),
])
def test_malformed_or_escaping_evidence_fails_in_one_line(tmp_path, edit, reason):
    folder = tmp_path / "ex01_q1"
    evidence.write("ex01_q1", folder, {"model": "text"})
    manifest = json.loads((folder / "manifest.json").read_text())
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    result = verdict(folder, "ex01_q1")
    assert not result.passed and reason in result.line and "\n" not in result.line, result.line


def test_no_evidence_at_all(tmp_path):
    result = verdict(tmp_path / "nothing", "ex01_q1")
    assert not result.passed and "no evidence was saved" in result.line
    with pytest.raises(EvidenceError):
        Evidence(tmp_path / "nothing")


def test_evidence_says_whose_data_it_holds_and_another_learners_grading_refuses_it(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_LEARNER", "alice")
    evidence.write("ex01_q4", tmp_path / "ex01_q4", {"n_tensors": 3, "folder": str(tmp_path)}, None,
                   frozenset({"folder"}))
    assert Evidence(tmp_path / "ex01_q4").learner == "alice"
    result = verdict(tmp_path / "ex01_q4", "ex01_q4", learner="bob")
    assert not result.passed and "learner 'alice' but is graded as 'bob'" in result.line


def test_a_given_cells_snapshot_and_earlier_evidence_are_read_back_as_they_were(tmp_path, monkeypatch):
    monkeypatch.setenv(evidence.EVIDENCE_ENV, str(tmp_path / "evidence"))
    made = tmp_path / "made"
    made.mkdir()
    (made / "adapter_config.json").write_text("{}")
    evidence.record_given("ex09_given", folder=str(made))
    evidence.write("ex09_q1", tmp_path / "evidence" / "ex09_q1", {"x": 1})
    (made / "adapter_config.json").write_text('{"changed": true}')   # an answer changes the folder later
    later = Evidence(tmp_path / "evidence" / "ex09_q1")
    later.seed = 5
    snap = later.earlier("ex09_given")
    assert snap.seed == 5 and (snap.value("folder") / "adapter_config.json").read_text() == "{}"
    assert later.earlier("ex09_q7") is None
    (tmp_path / "evidence" / "linked").symlink_to(tmp_path / "evidence" / "ex09_given")
    assert later.earlier("linked") is None


def test_the_self_check_keeps_its_evidence_for_later_questions_in_a_folder_of_its_own(monkeypatch):
    monkeypatch.delenv(evidence.EVIDENCE_ENV, raising=False)
    root = evidence.evidence_root()
    assert root == evidence.evidence_root() and root.is_dir() and str(root.stat().st_mode & 0o777) == str(0o700)


def _switched_off(m):
    m.base_model.disable_adapter_layers()


def _scaled(m):
    for module in m.modules():
        if hasattr(module, "set_scale"):
            module.set_scale("default", 0.25)


def _merged(m):
    m.merge_adapter()


@pytest.mark.parametrize("change", [_switched_off, _scaled, _merged], ids=["switched off", "set_scale", "merged"])
def test_a_rebuilt_model_computes_what_the_learners_model_computed(tmp_path, change):
    """The evidence keeps what a LoRA layer computes besides its tensors, so the checker judges the model the
    learner has: an adapter switched off acts as the base, a merged one as the merged model."""
    from peft import PeftModel

    from course_utils import load_tokenizer, shipped_adapter
    from course_utils.roundtrip import logits_of, sample_batch

    model = PeftModel.from_pretrained(load_base_model(), shipped_adapter("spanish_sentiment"))
    batch = sample_batch(load_tokenizer())
    before = logits_of(model, batch)
    change(model)
    evidence.write("ex00_q1", tmp_path / "ex00_q1", {"model": model})
    rebuilt = Evidence(tmp_path / "ex00_q1").value("model")
    mine = logits_of(model, batch)
    assert torch.allclose(logits_of(rebuilt, batch), mine, atol=1e-5)
    if change is not _merged:
        assert not torch.allclose(mine, before, atol=1e-3)   # the change is one the checker has to see
