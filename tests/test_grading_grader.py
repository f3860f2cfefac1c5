"""The grader: full marks for the solutions, 0 for the untouched copies, and broken submissions graded
with clear messages while the batch goes on. Runs the real CLI (fresh kernels), so it takes a few minutes."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_utils.grading.grader import plan_cells
from course_utils.grading.student_copies import check_id_of
from course_utils.maintenance.repo import EXERCISES, SOLUTIONS

EX01 = SOLUTIONS / "01_save_adapter.ipynb"


def grade_cli(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "course_utils", "grade", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def results_of(run) -> dict[str, dict]:
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout, run.stderr[-2000:]
    return {Path(r["notebook"]).name: r for r in map(json.loads, run.stdout.splitlines())}


def by_id(result) -> dict[str, dict]:
    return {q["id"]: q for q in result["questions"]}


def _cell(nb, gid):
    return next(c for c in nb.cells if check_id_of(c) == gid)


def tampered() -> nbformat.NotebookNode:
    """A wrong answer behind an edited check cell, a deleted check cell, megabytes of output, a syntax
    error, and cells moved around."""
    nb = nbformat.read(EX01, as_version=4)
    _cell(nb, "ex01_q1_answer").source = (
        'config = LoraConfig(r=8, target_modules=["c_attn", "c_proj"], init_lora_weights=False)\n'
        "model = get_peft_model(load_base_model(), config)\n"
        'check = lambda *args, **kwargs: print("✓ fooled you")')
    _cell(nb, "ex01_q1").source = 'print("✓ ex01_q1: passed (+2 points)")'
    nb.cells.remove(_cell(nb, "ex01_q2"))
    _cell(nb, "ex01_q3_answer").source += '\nprint("x" * 3_000_000)'
    _cell(nb, "ex01_q4_answer").source = "n_tensors = len(tensor_table(folder / 'adapter_model.safetensors')"
    q4 = [_cell(nb, "ex01_q4_answer"), _cell(nb, "ex01_q4")]
    for c in q4:
        nb.cells.remove(c)
    at = nb.cells.index(_cell(nb, "ex01_q3_answer"))
    nb.cells[at:at] = q4
    return nb


def crashing() -> nbformat.NotebookNode:
    """An endless loop in one answer, and an answer that kills its kernel."""
    nb = nbformat.read(EX01, as_version=4)
    _cell(nb, "ex01_q3_answer").source = "files = sorted(list_files(folder))\nwhile True:\n    pass"
    _cell(nb, "ex01_q4_answer").source = "import os\nos._exit(1)"
    return nb


@pytest.fixture(scope="module")
def broken_batch(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submissions")
    nbformat.write(tampered(), folder / "01_save_adapter_tampered.ipynb")
    nbformat.write(crashing(), folder / "01_save_adapter_crashing.ipynb")
    (folder / "01_save_adapter_garbage.ipynb").write_text("{ this is not json")
    other = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
    nbformat.write(other, folder / "zz_notes.ipynb")
    gradebook = folder / "gradebook.csv"
    run = grade_cli(str(folder), str(folder / "missing.ipynb"), "--json", "--csv", str(gradebook),
                    "--cell-timeout", "5", "--total-timeout", "600")
    return run, results_of(run), gradebook


def test_batch_goes_on_and_reports_every_submission(broken_batch):
    run, results, _ = broken_batch
    assert set(results) == {"01_save_adapter_tampered.ipynb", "01_save_adapter_crashing.ipynb",
                            "01_save_adapter_garbage.ipynb", "zz_notes.ipynb"}
    assert run.returncode == 1 and "missing.ipynb: no such file or folder" in run.stderr
    assert "grading [" in run.stderr and "4/4 done" in run.stderr
    for r in results.values():
        assert set(r) >= {"notebook", "exercise", "score", "max_score", "questions"}
        for q in r["questions"]:
            assert set(q) >= {"id", "points", "max_points", "passed", "feedback"}


def test_edited_and_deleted_checks_are_restored(broken_batch):
    r = broken_batch[1]["01_save_adapter_tampered.ipynb"]
    q = by_id(r)
    assert not q["ex01_q1"]["passed"] and "rank r=8" in q["ex01_q1"]["feedback"]
    assert q["ex01_q2"]["passed"] and q["ex01_q3"]["passed"]
    assert not q["ex01_q4"]["passed"] and "SyntaxError" in q["ex01_q4"]["feedback"]
    assert r["score"] == 3 and r["max_score"] == 6
    notes = " ".join(r["messages"])
    assert "check cell ex01_q1 was edited" in notes and "check cell ex01_q2 was deleted" in notes
    assert "cells were moved" in notes and "MB of output" in notes


def test_endless_loop_and_dead_kernel_cost_only_their_questions(broken_batch):
    r = broken_batch[1]["01_save_adapter_crashing.ipynb"]
    q = by_id(r)
    assert q["ex01_q1"]["passed"] and q["ex01_q2"]["passed"] and r["score"] == 4
    assert "ran past its 5 s limit" in q["ex01_q3"]["feedback"]
    assert "kernel died" in q["ex01_q4"]["feedback"]
    assert any("restarted the kernel" in m for m in r["messages"])


def test_unreadable_and_foreign_notebooks(broken_batch):
    results = broken_batch[1]
    garbage = results["01_save_adapter_garbage.ipynb"]
    assert garbage["exercise"] == "01_save_adapter" and garbage["score"] == 0 and garbage["max_score"] == 6
    assert "not a readable notebook" in garbage["messages"][0]
    notes = results["zz_notes.ipynb"]
    assert notes["exercise"] is None and "not one of the course's exercises" in notes["messages"][0]


def test_gradebook_has_a_row_per_submission_and_a_column_per_question(broken_batch):
    rows = list(csv.DictReader(broken_batch[2].open()))
    assert len(rows) == 4
    tampered_row = next(r for r in rows if r["notebook"].endswith("tampered.ipynb"))
    assert [tampered_row[k] for k in ("ex01_q1", "ex01_q2", "ex01_q3", "ex01_q4", "score")] == ["0", "2", "1", "0", "3"]


def test_plan_keeps_learner_answers_and_restores_locked_cells():
    source = nbformat.read(EX01, as_version=4)
    plan, messages = plan_cells(tampered(), source)
    kinds = [(c.kind, c.grade_id) for c in plan]
    assert kinds.index(("answer", "ex01_q3_answer")) < kinds.index(("answer", "ex01_q4_answer"))
    check_q1 = next(c for c in plan if c.grade_id == "ex01_q1")
    assert 'check("ex01_q1", model=model)' in check_q1.source and "import check" in check_q1.source
    assert "r=8" in next(c for c in plan if c.grade_id == "ex01_q1_answer").source
    assert len(messages) == 3


def test_solutions_get_full_marks_and_student_copies_zero():
    run = grade_cli(str(SOLUTIONS), str(EXERCISES), "--json")
    assert run.returncode == 0
    results = [json.loads(line) for line in run.stdout.splitlines()]
    assert "Traceback" not in run.stderr
    solutions = [r for r in results if "/solutions/" in r["notebook"]]
    students = [r for r in results if "/solutions/" not in r["notebook"]]
    assert len(solutions) == len(students) == 5
    for r in solutions:
        assert r["score"] == r["max_score"] > 0 and not r["messages"], r
    for r in students:
        assert r["score"] == 0 and r["max_score"] > 0, r
        assert all("is still None" in q["feedback"] for q in r["questions"]), r
