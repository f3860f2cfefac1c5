"""The nbgrader route on the same notebooks: ``nbgrader validate`` passes every solution and fails every
student copy, and ``generate_assignment`` + ``autograde`` give the same score as our grader, question by
question, on a solution, a stub and a partly right submission. Needs the ``instructor`` extra (nbgrader)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_utils.grading import EXERCISE_GLOB
from course_utils.grading.checks import CHECKS
from course_utils.maintenance.notebook_env import notebook_environ
from course_utils.maintenance.repo import EXERCISES, SOLUTIONS

if shutil.which("nbgrader", path=str(Path(sys.executable).parent)) is None:
    if os.environ.get("CI", "").lower() == "true":
        raise RuntimeError("nbgrader is not installed: pip install -e '.[instructor]' (CI needs it)")
    pytest.skip("nbgrader is not installed (pip install -e '.[instructor]')", allow_module_level=True)

from nbgrader.api import Gradebook
from nbgrader.preprocessors import CheckCellMetadata
from nbgrader.validator import Validator

NBGRADER = str(Path(sys.executable).parent / "nbgrader")
EX01 = "Exercise_01_save_adapter"

EX01_MAX = sum(c.points for gid, c in CHECKS.items() if gid.startswith("ex01_"))


def nbgrader(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run nbgrader; it calls ``alembic`` by name, so the environment's bin folder goes first on PATH."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run([NBGRADER, *args], cwd=cwd, check=False, capture_output=True, text=True, timeout=900,
                          env={**notebook_environ(), "PATH": path})


def partly_right() -> nbformat.NotebookNode:
    nb = nbformat.read(SOLUTIONS / f"{EX01}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "ex01_q3_answer")
    cell.source = 'files = ["adapter_config.json"]'
    return nb


SUBMISSIONS = {"solution": lambda: nbformat.read(SOLUTIONS / f"{EX01}.ipynb", as_version=4),
               "stub": lambda: nbformat.read(EXERCISES / f"{EX01}.ipynb", as_version=4),
               "partly": partly_right}


@pytest.fixture(scope="module")
def course(tmp_path_factory, requires_sandbox):
    root = tmp_path_factory.mktemp("nbgrader_course")
    (root / "nbgrader_config.py").write_text(
        f'c = get_config()\nc.CourseDirectory.root = r"{root}"\nc.CourseDirectory.course_id = "peft-course"\n'
        "c.ExecutePreprocessor.timeout = 300\n")
    (root / "source" / "ex01").mkdir(parents=True)
    shutil.copy(SOLUTIONS / f"{EX01}.ipynb", root / "source" / "ex01")
    generated = nbgrader("generate_assignment", "ex01", "--force", cwd=root)
    assert generated.returncode == 0, generated.stderr[-3000:]
    subs = root / "subs"
    subs.mkdir()
    for student, make in SUBMISSIONS.items():
        folder = root / "submitted" / student / "ex01"
        folder.mkdir(parents=True)
        nbformat.write(make(), folder / f"{EX01}.ipynb")
        nbformat.write(make(), subs / f"{EX01}_{student}.ipynb")
    graded = nbgrader("autograde", "ex01", "--force", cwd=root)
    assert graded.returncode == 0, graded.stderr[-3000:]
    ours = subprocess.run([sys.executable, "-m", "course_utils", "grade", str(subs), "--json"], check=False,
                          capture_output=True, text=True, timeout=900, env=notebook_environ())
    assert ours.returncode == 0, ours.stderr[-3000:]
    return root, [json.loads(line) for line in ours.stdout.splitlines()]


def test_generate_assignment_strips_the_solutions(course):
    root, _ = course
    release = nbformat.read(root / "release" / "ex01" / f"{EX01}.ipynb", as_version=4)
    text = "\n".join(c.source for c in release.cells)
    assert "### BEGIN SOLUTION" not in text and "YOUR CODE HERE" in text


def test_autograde_scores_equal_ours_question_by_question(course):
    root, ours = course
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        for result in ours:
            student = result["notebook"].rsplit("_", 1)[1].removesuffix(".ipynb")
            theirs = {q["id"]: gb.find_grade(q["id"], EX01, "ex01", student).score for q in result["questions"]}
            mine = {q["id"]: q["points"] for q in result["questions"]}
            assert theirs == mine, (student, theirs, mine)
    scores = {r["notebook"].rsplit("_", 1)[1]: r["score"] for r in ours}
    assert scores["solution.ipynb"] == EX01_MAX and scores["stub.ipynb"] == 0
    assert 0 < scores["partly.ipynb"] < EX01_MAX


def validate_stored(path: Path) -> dict:
    """What ``nbgrader validate`` decides about ``path``, judged on its stored outputs: nbgrader's own Validator with
    its metadata check but without its ClearOutput and Execute steps (a public trait of the class). Running each
    notebook again here took 25 s per exercise and added no power: ``make check-notebooks`` (strict nbval) proves
    that the stored outputs are what a fresh run prints, and ``autograde`` above runs nbgrader's kernel for real."""
    return Validator(preprocessors=[CheckCellMetadata]).validate(str(path))


def graded_check_cells(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"]


@pytest.mark.parametrize("name", [p.name for p in sorted(SOLUTIONS.glob(EXERCISE_GLOB))])
def test_validate_passes_the_solution_and_fails_the_stub(name):
    assert validate_stored(SOLUTIONS / name) == {}, f"nbgrader validate fails the solution {name}"
    stub = validate_stored(EXERCISES / name)
    assert set(stub) == {"failed"}, stub.keys()
    checks = graded_check_cells(EXERCISES / name)
    assert len(stub["failed"]) == len(checks) > 0, (name, [f["raw_error"][:60] for f in stub["failed"]])
    assert all("is still None" in f["raw_error"] for f in stub["failed"]), stub["failed"]


def test_validate_reads_the_stored_outputs(tmp_path):
    """The judgement comes from the stored outputs: one check cell's stored ✗ fails the solution."""
    nb = nbformat.read(SOLUTIONS / f"{EX01}.ipynb", as_version=4)
    check = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code")
    check.outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue="✗ forged", traceback=["✗"])]
    nbformat.write(nb, tmp_path / "failed.ipynb")
    assert [f["raw_error"] for f in validate_stored(tmp_path / "failed.ipynb")["failed"]] == ["✗"]
