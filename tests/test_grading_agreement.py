"""The in-notebook self-check and the grader agree on every answer: the same notebooks run as a learner runs them
(check cells judge in the kernel) and through the real grader (sandboxed kernel, trusted checker), and every
question gets the same verdict and the same line. Also: solutions get full marks, untouched student copies 0."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from course_utils.grading import exercise_number
from course_utils.grading.checks import CHECKS, SELF_CHECK
from course_utils.grading.student_copies import check_id_of, is_answer, solution_paths
from course_utils.maintenance.notebook_env import KERNEL_NAME, notebook_environ
from course_utils.maintenance.repo import EXERCISES, SOLUTIONS

# One exercise per lesson.
LESSON_COUNT = len(list((Path(__file__).parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb")))

# A wrong answer no comparison can see through: equal to everything, and a str (the example).
ALWAYS_EQUAL = ("class _Same(str):\n    def __eq__(self, other):\n        return True\n    __hash__ = str.__hash__\n")


def wrong_ids(nb) -> set[str]:
    """The questions ``mixed`` answers wrong: every other one (Q2, Q4, ...), or the only one."""
    ids = [check_id_of(c) for c in nb.cells if not is_answer(c) and check_id_of(c) in CHECKS]
    return set(ids) if len(ids) == 1 else {gid for gid in ids if int(gid.rsplit("_q", 1)[1]) % 2 == 0}


def mixed(solution: Path) -> nbformat.NotebookNode:
    """The solution with every other question's answers (an exercise's only one) replaced by always-equal strings.
    The right objects are kept aside and put back by a cell of the learner's after the check, so later questions
    still get them."""
    nb = nbformat.read(solution, as_version=4)
    wrong = wrong_ids(nb)
    cells = []
    for cell in nb.cells:
        cells.append(cell)
        found = re.fullmatch(r"(ex\d\d_q(\d+))", check_id_of(cell)) if not is_answer(cell) else None
        if found and found.group(1) in wrong:
            names = CHECKS[found.group(1)].answers
            answer = next(c for c in cells if check_id_of(c) == f"{found.group(1)}_answer")
            answer.source += ("\n" + ALWAYS_EQUAL + f"_kept = {{n: globals()[n] for n in {list(names)!r}}}\n"
                              + "".join(f"{n} = _Same('{n}')\n" for n in names))
            cells.append(nbformat.v4.new_code_cell("globals().update(_kept)"))
    nb.cells = cells
    return nb


def self_check_lines(nb: nbformat.NotebookNode, workdir: Path) -> dict[str, str]:
    """Run ``nb`` as a learner does (no grader) and return each check cell's ✓ or ✗ line."""
    NotebookClient(nb, kernel_name=KERNEL_NAME, allow_errors=True, timeout=300,
                   resources={"metadata": {"path": str(workdir)}}).execute()
    lines = {}
    for cell in nb.cells:
        gid = check_id_of(cell)
        if gid not in CHECKS:
            continue
        for out in cell.get("outputs", []):
            text = out.get("evalue", "") if out.get("output_type") == "error" else out.get("text", "")
            found = re.search(rf"[✓✗] {gid}: .*", text)
            if found:
                lines[gid] = found.group(0).replace(f"; {SELF_CHECK})", ")")
    return lines


@pytest.fixture(scope="module")
def graded(tmp_path_factory, requires_sandbox):
    """One grader run over the solutions, the student copies and the mixed notebooks."""
    folder = tmp_path_factory.mktemp("mixed")
    for path in solution_paths():
        nbformat.write(mixed(path), folder / path.name)
    run = subprocess.run([sys.executable, "-m", "course_utils", "grade", str(SOLUTIONS), str(EXERCISES),
                          str(folder), "--json", "--jobs", "2"], check=False, capture_output=True, text=True,
                         timeout=1800, env=notebook_environ())
    assert "Traceback" not in run.stderr + run.stdout, run.stderr[-2000:]
    results = [json.loads(line) for line in run.stdout.splitlines()]
    return run, results, folder


def test_solutions_get_full_marks_and_student_copies_zero(graded):
    run, results, folder = graded
    assert run.returncode == 0
    solutions = [r for r in results if "/solutions/" in r["notebook"]]
    students = [r for r in results if Path(r["notebook"]).parent == EXERCISES]
    assert len(solutions) == len(students) == len(solution_paths()) == LESSON_COUNT
    for r in solutions:
        assert r["score"] == r["max_score"] > 0 and not r["messages"], r
        assert r["learner"] == "ci", r   # read from the first cell's stored output
    for r in students:
        assert r["score"] == 0 and r["max_score"] > 0, r
        assert all("is still None" in q["feedback"] for q in r["questions"]), r


@pytest.mark.parametrize("solution", solution_paths(), ids=lambda p: exercise_number(p.name))
def test_self_check_and_grader_agree_on_every_answer(graded, solution, tmp_path):
    _, results, folder = graded
    graded_lines = {q["id"]: q["feedback"] for r in results if Path(r["notebook"]) == folder / solution.name
                    for q in r["questions"]}
    assert graded_lines, f"{solution.name} was not graded"
    mine = self_check_lines(mixed(solution), tmp_path)
    assert mine == graded_lines
    wrong = wrong_ids(nbformat.read(solution, as_version=4))
    assert wrong and all(graded_lines[g].startswith(f"✗ {g}: ") for g in wrong), graded_lines
    # the kept right answers pass, except where a judge compares with an earlier question's evidence, which the
    # always-equal answer replaced (exercise 1's Q5 reads the model saved in Q2)
    right = [gid for gid in graded_lines if gid not in wrong]
    assert not right or any(graded_lines[g].startswith(f"✓ {g}: ") for g in right), graded_lines


@pytest.mark.parametrize("solution", solution_paths(), ids=lambda p: exercise_number(p.name))
def test_stored_self_checks_of_the_solutions_are_the_graders_lines(graded, solution):
    """Every question's ✓, as the solution's stored check cell shows it, is the line the grader gives (exercises
    with one question have no right answer in their mixed notebook: this is where their ✓ is compared)."""
    _, results, _ = graded
    graded_lines = {q["id"]: q["feedback"] for r in results if Path(r["notebook"]) == solution for q in r["questions"]}
    stored = {}
    for cell in nbformat.read(solution, as_version=4).cells:
        text = "".join(o.get("text", "") for o in cell.get("outputs", []) if check_id_of(cell) in CHECKS)
        found = re.search(rf"✓ {check_id_of(cell)}: .*", text)
        if found:
            stored[check_id_of(cell)] = found.group(0).replace(f"; {SELF_CHECK})", ")")
    assert stored and stored == graded_lines
