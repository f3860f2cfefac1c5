"""The grader: full marks for the solutions, 0 for the untouched copies, and broken submissions graded
with clear messages while the batch goes on. Runs the real CLI (fresh kernels), so it takes a few minutes."""
from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import hostile_submissions as hostile
import nbformat
import pytest

from course_utils.grading import grader
from course_utils.grading.checks import CHECKS
from course_utils.grading.run import plan_cells
from course_utils.grading.student_copies import check_id_of
from course_utils.grading.submission import identify_exercise, read_submission
from course_utils.maintenance.notebook_env import notebook_environ
from course_utils.maintenance.repo import EXERCISES, REPO, SOLUTIONS

# One exercise per lesson.
LESSON_COUNT = len(list((Path(__file__).parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb")))

EX01 = SOLUTIONS / "Exercise_01_save_adapter.ipynb"
CHECKS_PY = Path(grader.__file__).with_name("checks.py")
POINTS = {gid: check.points for gid, check in CHECKS.items()}
EX01_MAX = sum(p for gid, p in POINTS.items() if gid.startswith("ex01_"))


def grade_cli(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "course_utils", "grade", *args], check=False, capture_output=True, text=True,
                          timeout=timeout, env=notebook_environ())


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


def replay_times_out() -> nbformat.NotebookNode:
    """A first answer that is quick once but hangs when replayed, then an answer that kills the kernel."""
    nb = nbformat.read(EX01, as_version=4)
    _cell(nb, "ex01_q1_answer").source += (
        '\nimport time\nmark = Path("ran_once")\nif mark.exists():\n    time.sleep(999)\nmark.touch()')
    _cell(nb, "ex01_q2_answer").source = "import os\nos._exit(1)"
    return nb


def malformed() -> dict:
    """Right answers in a notebook whose metadata has the wrong types: course_exercise a list, the first
    answer's nbgrader metadata a string, a cell's source a number, a cell that is not an object."""
    nb = json.loads(EX01.read_text())
    nb["metadata"]["course_exercise"] = ["01_save_adapter"]
    cells = nb["cells"]
    q1 = next(c for c in cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "ex01_q1_answer")
    q1["metadata"]["nbgrader"] = "solution"
    cells.append({"cell_type": "code", "source": 5, "metadata": {"nbgrader": []}})
    cells.append("not a cell")
    return nb


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree_signature(root: Path, contents: bool) -> dict[str, str]:
    """Every file under ``root``: its sha256 (``contents``) or its size and mtime (a large tree: the venv)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and "__pycache__" not in path.parts:
            stat = path.stat()
            out[str(path)] = _sha(path) if contents else f"{stat.st_size}:{stat.st_mtime_ns}"
    return out


def _outside_state(other: Path) -> dict:
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    return {"checkout": {f: _sha(REPO / f) for f in tracked if (REPO / f).is_file()},
            "venv": _tree_signature(Path(sys.prefix), contents=False),
            "other submission": _tree_signature(other, contents=True)}


@pytest.fixture(scope="module")
def broken_batch(tmp_path_factory, requires_sandbox):
    folder = tmp_path_factory.mktemp("submissions")
    other = tmp_path_factory.mktemp("other_submission")
    shutil.copy(EX01, other / "Exercise_01_save_adapter.ipynb")
    nbformat.write(tampered(), folder / "01_save_adapter_tampered.ipynb")
    nbformat.write(crashing(), folder / "01_save_adapter_crashing.ipynb")
    nbformat.write(replay_times_out(), folder / "01_save_adapter_replay.ipynb")
    (folder / "01_save_adapter_malformed.ipynb").write_text(json.dumps(malformed()))
    shutil.copy(EXERCISES / "Exercise_01_save_adapter.ipynb", folder / "01_save_adapter_zstub.ipynb")
    (folder / "01_save_adapter_garbage.ipynb").write_text("{ this is not json")
    (folder / "01_save_adapter_empty.ipynb").write_bytes(b"")
    (folder / "01_save_adapter_list.ipynb").write_text("[1, 2]")
    other_nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
    nbformat.write(other_nb, folder / "zz_notes.ipynb")
    hostile.write_batch(folder, other)
    gradebook = folder / "gradebook.csv"
    before = _outside_state(other)
    run = grade_cli(str(folder), str(folder / "missing.ipynb"), "--json", "--csv", str(gradebook),
                    "--cell-timeout", "10", "--total-timeout", "600", "--jobs", "2")
    return run, results_of(run), gradebook, (before, _outside_state(other))


NAMES = {"01_save_adapter_tampered.ipynb", "01_save_adapter_crashing.ipynb", "01_save_adapter_replay.ipynb",
         "01_save_adapter_malformed.ipynb", "01_save_adapter_zstub.ipynb", "01_save_adapter_garbage.ipynb",
         "01_save_adapter_empty.ipynb", "01_save_adapter_list.ipynb", "zz_notes.ipynb",
         *hostile.NAMES}


def test_batch_goes_on_and_reports_every_submission(broken_batch):
    run, results, *_ = broken_batch
    assert set(results) == NAMES
    assert run.returncode == 1 and "missing.ipynb: no such file or folder" in run.stderr
    assert "grading [" in run.stderr and f"{len(NAMES)}/{len(NAMES)} done" in run.stderr
    for r in results.values():
        assert set(r) >= {"notebook", "exercise", "score", "max_score", "questions"}
        for q in r["questions"]:
            assert set(q) >= {"id", "points", "max_points", "passed", "feedback"}


def test_edited_and_deleted_checks_are_restored(broken_batch):
    r = broken_batch[1]["01_save_adapter_tampered.ipynb"]
    q = by_id(r)
    assert not q["ex01_q1"]["passed"] and "the task does not target" in q["ex01_q1"]["feedback"]  # r=8 on c_attn and c_proj
    assert q["ex01_q2"]["passed"] and q["ex01_q3"]["passed"]
    assert not q["ex01_q4"]["passed"] and "SyntaxError" in q["ex01_q4"]["feedback"]
    assert q["ex01_q5"]["passed"]  # untouched: still earns its points
    assert r["score"] == POINTS["ex01_q2"] + POINTS["ex01_q3"] + POINTS["ex01_q5"] and r["max_score"] == EX01_MAX
    notes = " ".join(r["messages"])
    assert "check cell ex01_q1 was edited" in notes and "check cell ex01_q2 was deleted" in notes
    assert "cells were moved" in notes and "MB of output" in notes


def test_endless_loop_and_dead_kernel_cost_only_their_questions(broken_batch):
    r = broken_batch[1]["01_save_adapter_crashing.ipynb"]
    q = by_id(r)
    assert q["ex01_q1"]["passed"] and q["ex01_q2"]["passed"] and q["ex01_q5"]["passed"]
    assert r["score"] == POINTS["ex01_q1"] + POINTS["ex01_q2"] + POINTS["ex01_q5"]
    assert "ran past its 10 s limit" in q["ex01_q3"]["feedback"]
    assert "kernel died" in q["ex01_q4"]["feedback"]
    assert any("restarted the kernel" in m for m in r["messages"])


def test_unreadable_and_foreign_notebooks(broken_batch):
    results = broken_batch[1]
    garbage = results["01_save_adapter_garbage.ipynb"]
    # named the old way (01_...): matched by its number
    assert garbage["exercise"] == "Exercise_01_save_adapter" and garbage["score"] == 0 and garbage["max_score"] == EX01_MAX
    assert "not a readable notebook" in garbage["messages"][0]
    notes = results["zz_notes.ipynb"]
    assert notes["exercise"] is None and notes["messages"] == [
        f"not one of the course's exercises (01-{LESSON_COUNT:02d}): no exercise's grade ids in its cells, and its name "
        "does not start with Exercise_NN_ (or NN_) for one of them."]


def test_gradebook_has_a_row_per_submission_and_a_column_per_question(broken_batch):
    rows = list(csv.DictReader(broken_batch[2].open()))
    assert len(rows) == len(NAMES)
    tampered_row = next(r for r in rows if r["notebook"].endswith("tampered.ipynb"))
    keys = ("ex01_q1", "ex01_q2", "ex01_q3", "ex01_q4", "ex01_q5", "score")
    expected = [0, POINTS["ex01_q2"], POINTS["ex01_q3"], 0, POINTS["ex01_q5"]]
    assert [tampered_row[k] for k in keys] == [str(v) for v in expected + [sum(expected)]]


def test_plan_keeps_learner_answers_and_restores_locked_cells():
    source = nbformat.read(EX01, as_version=4)
    plan, messages = plan_cells(tampered(), source)
    kinds = [(c.kind, c.grade_id) for c in plan]
    assert kinds.index(("answer", "ex01_q3_answer")) < kinds.index(("answer", "ex01_q4_answer"))
    check_q1 = next(c for c in plan if c.grade_id == "ex01_q1")
    assert 'check("ex01_q1", model=model)' in check_q1.source and "import check" in check_q1.source
    assert "r=8" in next(c for c in plan if c.grade_id == "ex01_q1_answer").source
    assert len(messages) == 3


# Solutions get full marks and untouched student copies 0: tests/test_grading_agreement.py asserts it on its one
# grader run over both folders (grading them again here took 184 s of every `make test`).


# ---------------------------------------------------------------------------- hostile submissions (hostile_submissions.py)
def _q(results, name):
    return by_id(results[name])


@pytest.mark.parametrize("name, reason", [
    ("01_fake_module.ipynb", "no evidence was saved"),
    ("01_patched_import.ipynb", "no evidence was saved"),
    ("01_spec_loaded.ipynb", "no evidence was saved"),
    ("01_patched_torch.ipynb", "has rank 8"),
    ("01_lying_model.ipynb", "is a Liar, not a PeftModel"),
    ("01_forged_evidence.ipynb", "could not use the evidence: a model's layers do not match"),
    ("01_evidence_links.ipynb", "no evidence was saved"),
])
def test_a_forged_verdict_earns_nothing(broken_batch, name, reason):
    """Each attack comes with a wrong Q1: whatever the kernel did, the checker outside judged the evidence."""
    q = _q(broken_batch[1], name)["ex01_q1"]
    assert q["points"] == 0 and reason in q["feedback"] and "\n" not in q["feedback"], q
    assert broken_batch[1][name]["isolation"] == "bubblewrap"


def test_a_given_cell_runs_the_courses_own_functions_whatever_a_cell_above_rebound(broken_batch):
    q = _q(broken_batch[1], "01_rebinds_given.ipynb")
    assert q["ex01_q1"]["points"] == q["ex01_q1"]["max_points"], q["ex01_q1"]
    assert q["ex01_q5"]["points"] == 0 and q["ex01_q5"]["feedback"].startswith("✗ ex01_q5: "), q["ex01_q5"]


def test_evidence_is_the_graders_copy_once_its_check_cell_ends(broken_batch):
    """Links swapped in after a check ran change nothing of its evidence; the last check's, written through the
    link, is not read at all (and the grader never reads /dev/zero)."""
    r = broken_batch[1]["01_evidence_swap.ipynb"]
    q = by_id(r)
    assert all(q[g]["passed"] for g in ("ex01_q1", "ex01_q2", "ex01_q3", "ex01_q4")), q
    assert not q["ex01_q5"]["passed"] and "no evidence was saved" in q["ex01_q5"]["feedback"]


def test_escapes_change_nothing_outside_the_submission(broken_batch):
    _, results, _, (before, after) = broken_batch
    for what in before:
        assert before[what] == after[what], f"a submission changed the {what}"
    assert not Path(f"/tmp/{hostile.MARK}").exists() and not Path(f"/root/{hostile.MARK}").exists()
    assert not (REPO / "hostile-probe").exists()
    left = subprocess.run(["pgrep", "-f", "sleep 7919.5"], check=False, capture_output=True, text=True)
    assert left.stdout == "", "a process started by a submission outlived its grading"
    assert results["01_escaper.ipynb"]["score"] == EX01_MAX  # its own right answers still count


def test_the_solutions_are_out_of_reach(broken_batch):
    r = broken_batch[1]["01_reads_solutions.ipynb"]
    assert r["score"] == 0 and all("is still None" in q["feedback"] for q in r["questions"]), r


@pytest.mark.parametrize("name", ["01_fork_bomb.ipynb", "01_sleeps.ipynb", "01_prints_1gb.ipynb"])
def test_resource_attacks_cost_at_most_their_own_question(broken_batch, name):
    q = _q(broken_batch[1], name)
    assert all(q[g]["passed"] for g in ("ex01_q1", "ex01_q2", "ex01_q4", "ex01_q5")), q
    if not q["ex01_q3"]["passed"]:
        assert "limit" in q["ex01_q3"]["feedback"] or "died" in q["ex01_q3"]["feedback"], q["ex01_q3"]


def test_deleting_its_own_notebook_and_evidence_mid_run_changes_nothing(broken_batch):
    """The grader holds the plan and a copy of each question's evidence taken as its check ended: a submission
    that deletes its notebook copy and its evidence folder halfway still gets what its answers earn."""
    r = broken_batch[1]["01_deletes_answers.ipynb"]
    assert r["score"] == EX01_MAX, r


def test_metadata_that_lies_gets_the_solution_points(broken_batch):
    r = broken_batch[1]["01_lying_metadata.ipynb"]
    q = by_id(r)
    assert r["max_score"] == EX01_MAX and q["ex01_q1"]["max_points"] == POINTS["ex01_q1"]
    assert not q["ex01_q1"]["passed"] and r["score"] == EX01_MAX - POINTS["ex01_q1"], r
    notes = " ".join(r["messages"])
    assert "check cell ex01_q1 was edited" in notes and "appears twice" in notes
    assert "not a readable notebook" in broken_batch[1]["01_malformed.ipynb"]["messages"][0]


def test_a_replayed_cell_that_times_out_says_so(broken_batch):
    r = broken_batch[1]["01_save_adapter_replay.ipynb"]
    q = by_id(r)
    assert q["ex01_q1"]["passed"] and "kernel died" in q["ex01_q2"]["feedback"]
    notes = " ".join(r["messages"])
    assert "while replaying the earlier cells" in notes and "answer cell ex01_q1_answer" in notes
    assert "total limit" not in notes


def test_malformed_metadata_and_empty_files_get_a_line(broken_batch):
    results = broken_batch[1]
    bad = results["01_save_adapter_malformed.ipynb"]
    assert bad["exercise"] == "Exercise_01_save_adapter" and bad["max_score"] == EX01_MAX
    assert "answer cell ex01_q1_answer is missing" in " ".join(bad["messages"])
    assert "empty file" in results["01_save_adapter_empty.ipynb"]["messages"][0]
    assert "its JSON is a list" in results["01_save_adapter_list.ipynb"]["messages"][0]


NAMES_NOW = ["Exercise_01_save_adapter", "Exercise_02_reload_adapter", "Exercise_06_new_tokens"]


@pytest.mark.parametrize("nb, expected", [
    ({"metadata": {"course_exercise": ["Exercise_01_save_adapter"]}}, "Exercise_01_save_adapter"),  # the file name
    ({"metadata": "x", "cells": [{"metadata": {"nbgrader": {"grade_id": "ex02_q1"}}}]}, "Exercise_02_reload_adapter"),
    ({"metadata": {"course_exercise": "Exercise_06_new_tokens"}}, "Exercise_06_new_tokens"),
    ({"cells": {"not": "a list"}}, "Exercise_01_save_adapter"),
    (None, "Exercise_01_save_adapter"),
])
def test_identify_exercise_never_raises(nb, expected):
    assert identify_exercise(nb, Path("Exercise_01_save_adapter_x.ipynb"), NAMES_NOW) == expected


@pytest.mark.parametrize("path, expected", [
    ("01_save_adapter.ipynb", "Exercise_01_save_adapter"),                       # named before the rename
    ("02_reload_adapter_alice.ipynb", "Exercise_02_reload_adapter"),
    ("exercise_06_new_tokens (1).ipynb", "Exercise_06_new_tokens"),              # a browser's copy
    ("course/submitted/alice/ex06/notebook.ipynb", "Exercise_06_new_tokens"),    # nbgrader's layout
    ("course/submitted/alice/Exercise_02_reload_adapter/mine.ipynb", "Exercise_02_reload_adapter"),
    ("course/autograded/bob/ex01/01_save_adapter.ipynb", "Exercise_01_save_adapter"),
    ("course/submitted/alice/ex07/notebook.ipynb", None),                        # no exercise 7 among the names
    ("other/alice/ex06/notebook.ipynb", None),                                   # not nbgrader's layout
    ("06.ipynb", "Exercise_06_new_tokens"),
    ("2024_06.ipynb", None),
    ("notes.ipynb", None),
])
def test_identify_exercise_by_number(path, expected):
    assert identify_exercise({"cells": []}, Path(path), NAMES_NOW) == expected


def test_a_notebook_of_no_exercise_gets_one_line(tmp_path):
    path = tmp_path / "notes.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")]), path)
    grading = grader.Grading({name: None for name in NAMES_NOW}, SimpleNamespace(level="none"))
    result = grader.grade_path(path, grading)
    assert result.exercise is None and result.score == 0 and result.messages == [
        "not one of the course's exercises (01-06): no exercise's grade ids in its cells, and its name does not start "
        "with Exercise_NN_ (or NN_) for one of them."]


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"), (b"\xff\xfe", "not UTF-8"), (b'"text"', "its JSON is a str"),
    (b"[" * 100000, "nested too deeply"), (b"{,}", "invalid JSON"),
])
def test_read_submission_says_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "x.ipynb"
    path.write_bytes(content)
    nb, problem = read_submission(path)
    assert nb is None and message in problem


def test_plan_tolerates_wrong_types():
    source = nbformat.read(EX01, as_version=4)
    sub = malformed()
    sub["cells"].append({"cell_type": "code", "source": ["x = ", 1, "2"], "metadata": None})
    plan, messages = plan_cells(sub, source)
    assert any(c.source == "x = 2" and c.kind == "extra" for c in plan)
    assert "answer cell ex01_q1_answer is missing (deleted, or its metadata removed)." in messages


def test_no_solutions_folder_gives_every_path_a_line(tmp_path, capsys):
    code = grader.run_grade([str(EXERCISES / "Exercise_01_save_adapter.ipynb")], as_json=True, solutions=str(tmp_path))
    out, err = capsys.readouterr()
    line = json.loads(out.splitlines()[0])
    assert code == 1 and "no solution notebooks" in line["messages"][0] and "cannot grade" in err


def test_a_host_that_cannot_sandbox_refuses_in_one_line(monkeypatch, capsys):
    from course_utils.grading.sandbox import Sandbox

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(grader, "make_sandbox", lambda memory, unsafe=False: Sandbox(None, 2**30, unsafe=unsafe))
    assert grader.run_grade([str(EX01)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "bubblewrap (bwrap) is not installed" in err
    assert "--unsafe-no-sandbox" in err
