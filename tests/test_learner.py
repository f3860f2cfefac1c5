"""Per-learner exercise data: the name, its seed, the first cell's line, and how the grader finds the name again."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_utils.grading.grader import SubmissionResult, shared_learners
from course_utils.grading.submission import learner_of
from course_utils.learner import (
    LEARNER_ENV,
    LearnerNameError,
    learner,
    learner_in_outputs,
    learner_name,
    learner_seed,
    valid_name,
)


def test_the_name_comes_from_the_environment_else_the_user(monkeypatch):
    monkeypatch.setenv(LEARNER_ENV, "s1234")
    assert learner_name() == "s1234"
    monkeypatch.delenv(LEARNER_ENV)
    monkeypatch.setattr("getpass.getuser", lambda: "Ana María")
    assert learner_name() == "Ana_Mar_a"
    monkeypatch.setattr("getpass.getuser", lambda: (_ for _ in ()).throw(KeyError("no user")))
    assert learner_name() == "learner"


def test_the_seed_is_stable_across_processes_and_differs_between_learners():
    here = learner_seed("alice")
    code = "from course_utils.learner import learner_seed; print(learner_seed('alice'))"
    there = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                           env={"PYTHONHASHSEED": "123", "PATH": ""}).stdout.strip()
    assert str(here) == there
    seeds = {learner_seed(f"learner{i}") for i in range(200)}
    assert len(seeds) == 200 and all(0 <= s < 2**31 for s in seeds)


@pytest.mark.parametrize("name", ["", " ", "a" * 65, "../etc", "-x", "a b", "x\ny", None, 7])
def test_a_name_that_cannot_seed_data_is_refused_in_one_line(name):
    with pytest.raises(LearnerNameError) as info:
        valid_name(name)
    assert "\n" not in str(info.value) and LEARNER_ENV in str(info.value)


def test_the_first_cell_prints_the_line_the_grader_reads_back(monkeypatch, capsys):
    monkeypatch.setenv(LEARNER_ENV, "bob.smith@uni")
    assert learner() == "bob.smith@uni"
    printed = capsys.readouterr().out
    assert learner_in_outputs(["other text", printed]) == "bob.smith@uni"
    assert learner_in_outputs(["Exercise data made for learner 'x y' (seed 1)."]) is None


def _notebook(first_output: str | None) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell("LEARNER = learner()")
    if first_output is not None:
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=first_output)]
    return nbformat.v4.new_notebook(cells=[cell])


def test_the_grader_reads_the_name_the_notebook_printed_then_the_submitter():
    line = f"Exercise data made for learner 'alice' (seed {learner_seed('alice')}).\n"
    assert learner_of(_notebook(line), Path("anything.ipynb")) == "alice"
    nbgrader = Path("course/submitted/s42/ex01/01_save_adapter.ipynb")
    assert learner_of(_notebook(None), nbgrader) == "s42"
    assert learner_of(_notebook(None), Path("inbox/jo smith.ipynb")) == "jo_smith"
    assert learner_of({"cells": "nonsense"}, Path("...ipynb")) == "learner"


def _result(name: str, learner: str, exercise: str = "01_save_adapter") -> SubmissionResult:
    return SubmissionResult(name, exercise, 0, 9, [], learner=learner)


def test_a_batch_warns_when_two_submissions_share_a_learners_data():
    results = [_result("a/x.ipynb", "alice"), _result("b/y.ipynb", "alice"), _result("c/z.ipynb", "bob"),
               _result("d/w.ipynb", "alice", "02_reload_adapter")]
    (warning,) = shared_learners(results)
    assert "2 submissions of 01_save_adapter" in warning and "'alice'" in warning and "x.ipynb, y.ipynb" in warning
    assert shared_learners(results[2:]) == []
