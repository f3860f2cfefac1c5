"""Grade exercise submissions: ``python -m course_utils grade PATH... [--json] [--csv FILE]``.

Each submission runs in a fresh kernel, in a temporary folder (its saved files never touch the course).
The check cells come from the solution notebook, matched by nbgrader ``grade_id`` (edited ones are
restored, deleted ones re-inserted after their answer, reordered cells run in the exercise's order), so
only the answer cells are the learner's. Every question is scored on its own: a cell that fails, loops
forever (per-cell timeout), or kills the kernel (the kernel is restarted and the earlier cells replayed)
costs only its own question. The grader reports a clear message for whatever went wrong and goes on with
the batch; it never raises on a bad submission. Used to grade the exercises of lessons 1-5.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from ..maintenance.notebook_env import ENV, KERNEL_NAME, KERNELSPEC
from ..maintenance.repo import SOLUTIONS
from ..messages import first_line
from .student_copies import (
    check_id_of,
    is_answer,
    is_check,
    nbgrader_meta,
    solution_paths,
)

CELL_TIMEOUT = 60      # seconds for one learner-written cell
LOCKED_TIMEOUT = 120   # seconds for one cell the instructor wrote (imports, given code, checks)
TOTAL_TIMEOUT = 600    # seconds for a whole submission
MAX_RESTARTS = 3       # kernel restarts (after a timeout or a crash) per submission
BIG_OUTPUT = 1_000_000  # bytes of output from one cell worth a message
_CHECK_IMPORT = "from course_utils.grading.checks import check  # restored by the grader\n"


@dataclass
class QuestionResult:
    id: str
    points: int
    max_points: int
    passed: bool
    feedback: str


@dataclass
class SubmissionResult:
    notebook: str
    exercise: str | None
    score: int
    max_score: int
    questions: list[QuestionResult]
    messages: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


@dataclass
class _Cell:
    source: str
    kind: str          # "given", "answer", "check", "extra"
    grade_id: str = ""
    timeout: float = CELL_TIMEOUT


@dataclass
class _Outcome:
    status: str        # "ok", "error", "timeout", "died", "not run"
    detail: str = ""


# ------------------------------------------------------------------------------ which exercise
def _solutions(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in solution_paths(folder)}


def identify_exercise(nb, path: Path, solutions: dict[str, Path]) -> str | None:
    """The solution stem a submission belongs to: its metadata, then its grade_ids, then its file name."""
    stem = (nb.get("metadata", {}) if nb is not None else {}).get("course_exercise")
    if stem in solutions:
        return stem
    if nb is not None:
        prefixes = {check_id_of(c).split("_")[0] for c in nb.get("cells", []) if check_id_of(c)}
        for name in solutions:
            if f"ex{name[:2]}" in prefixes:
                return name
    for name in solutions:
        if path.stem.startswith(name) or path.stem.startswith(name[:3]):
            return name
    return None


# ------------------------------------------------------------------------------ what to run
def plan_cells(submission, source, cell_timeout: float = CELL_TIMEOUT,
               locked_timeout: float = LOCKED_TIMEOUT) -> tuple[list[_Cell], list[str]]:
    """The code cells to run, in the exercise's order, with the locked cells taken from ``source``."""
    messages: list[str] = []
    src_cells = [c for c in source.cells if c.cell_type == "code"]
    known = {check_id_of(c) for c in src_cells}
    mine: dict[str, object] = {}
    extras: dict[str, list[str]] = {}
    anchor, order = "", []
    for cell in submission.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        gid = check_id_of(cell)
        if gid in known and gid not in mine:
            mine[gid] = cell
            order.append(gid)
            anchor = gid
        elif str(cell.get("source", "")).strip():
            if gid in known:
                messages.append(f"cell {gid} appears twice: ran only the first copy.")
                continue
            extras.setdefault(anchor, []).append(str(cell.get("source", "")))
    expected = [check_id_of(c) for c in src_cells if check_id_of(c) in mine]
    if order != expected:
        messages.append("cells were moved: ran them in the exercise's order.")
    plan = [_Cell(s, "extra", timeout=cell_timeout) for s in extras.get("", [])]
    for cell in src_cells:
        gid = check_id_of(cell)
        if is_answer(cell):
            if gid in mine:
                plan.append(_Cell(str(mine[gid].get("source", "")), "answer", gid, cell_timeout))
            else:
                messages.append(f"answer cell {gid} is missing (deleted, or its metadata removed).")
        else:
            kind = "check" if is_check(cell) else "given"
            if gid not in mine:
                messages.append(f"{kind} cell {gid} was deleted: restored it.")
            elif str(mine[gid].get("source", "")).strip() != cell.source.strip():
                messages.append(f"{kind} cell {gid} was edited: ran the original.")
            code = (_CHECK_IMPORT + cell.source) if kind == "check" else cell.source
            plan.append(_Cell(code, kind, gid, locked_timeout))
        plan += [_Cell(s, "extra", timeout=cell_timeout) for s in extras.get(gid, [])]
    return plan, messages


# ------------------------------------------------------------------------------ running
class _Restart(Exception):
    pass


def _outcome_of(cell) -> tuple[_Outcome, int]:
    size = 0
    error = None
    for out in cell.get("outputs", []):
        size += len(json.dumps(out, ensure_ascii=False))
        if out.get("output_type") == "error" and error is None:
            ename, evalue = out.get("ename", "Error"), first_line(out.get("evalue", ""))
            error = evalue if ename == "CheckFailed" else f"{ename}: {evalue}".rstrip(": ")
    return (_Outcome("error", error) if error is not None else _Outcome("ok")), size


def run_cells(cells: list[_Cell], workdir: Path, total_timeout: float = TOTAL_TIMEOUT,
              messages: list[str] | None = None) -> list[_Outcome]:
    """Run ``cells`` in a fresh kernel in ``workdir``; a hung or fatal cell is skipped after a kernel restart."""
    messages = messages if messages is not None else []
    os.environ.update(ENV)
    deadline = time.monotonic() + total_timeout
    outcomes = [_Outcome("not run", "was not run (see the notes)") for _ in cells]
    bad: set[int] = set()
    start_at, restarts = 0, 0
    while start_at < len(cells):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c.source) for c in cells])
        nb.metadata["kernelspec"] = dict(KERNELSPEC)
        client = NotebookClient(nb, kernel_name=KERNEL_NAME, allow_errors=True, record_timing=False,
                                shutdown_kernel="immediate", startup_timeout=120,
                                resources={"metadata": {"path": str(workdir)}})

        def run(i: int) -> None:
            remaining = deadline - time.monotonic()
            if remaining <= 1:
                raise TimeoutError
            client.timeout = max(1, int(min(cells[i].timeout, remaining)))
            client.execute_cell(nb.cells[i], i)

        try:
            with client.setup_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
                for i in range(start_at):  # replay what ran before the restart
                    if i not in bad:
                        run(i)
                        nb.cells[i].outputs = []
                for i in range(start_at, len(cells)):
                    try:
                        run(i)
                    except CellTimeoutError:
                        outcomes[i] = _Outcome("timeout", f"ran past its {client.timeout} s limit "
                                                          "(an endless loop?) and was stopped")
                        bad.add(i)
                        start_at = i + 1
                        raise _Restart from None
                    except DeadKernelError:
                        outcomes[i] = _Outcome("died", "the kernel died while running it (os._exit, a crash, "
                                                       "or out of memory)")
                        bad.add(i)
                        start_at = i + 1
                        raise _Restart from None
                    outcomes[i], size = _outcome_of(nb.cells[i])
                    if size > BIG_OUTPUT:
                        messages.append(f"a {cells[i].kind} cell{' ' + cells[i].grade_id if cells[i].grade_id else ''}"
                                        f" printed {size / 1e6:.1f} MB of output (not kept).")
                    nb.cells[i].outputs = []
                start_at = len(cells)
        except _Restart:
            restarts += 1
            if restarts > MAX_RESTARTS:
                messages.append(f"stopped after {MAX_RESTARTS} kernel restarts; later cells were not run.")
                break
            messages.append("restarted the kernel and replayed the earlier cells.")
        except TimeoutError:
            messages.append(f"the submission ran past the {total_timeout:.0f} s total limit; later cells were "
                            "not run.")
            break
        except (CellTimeoutError, DeadKernelError) as exc:  # a replayed cell failed this time
            messages.append(f"the kernel failed again while replaying earlier cells ({type(exc).__name__}); "
                            "later cells were not run.")
            break
        except RuntimeError as exc:  # the kernel would not start
            messages.append(f"could not start a kernel: {first_line(exc)}")
            break
    return outcomes


# ------------------------------------------------------------------------------ scoring
def _score(source, plan: list[_Cell], outcomes: list[_Outcome]) -> list[QuestionResult]:
    by_id = {c.grade_id: o for c, o in zip(plan, outcomes) if c.grade_id}
    results = []
    for cell in source.cells:
        if not is_check(cell):
            continue
        gid = check_id_of(cell)
        points = int(nbgrader_meta(cell).get("points", 0))
        outcome = by_id.get(gid, _Outcome("not run", "was not run (see the notes)"))
        passed = outcome.status == "ok"
        if passed:
            feedback = "✓ passed"
        else:
            feedback = outcome.detail if outcome.status == "error" else f"the check {outcome.detail}"
            if not feedback.startswith("✗"):
                feedback = f"✗ {gid}: {feedback}"
            answer = by_id.get(f"{gid}_answer")
            if answer is not None and answer.status != "ok":
                feedback += f" (your answer cell: {answer.detail})"
        results.append(QuestionResult(gid, points if passed else 0, points, passed, feedback))
    return results


def _failed(path: Path, exercise, source, message: str) -> SubmissionResult:
    questions = []
    if source is not None:
        questions = [QuestionResult(check_id_of(c), 0, int(nbgrader_meta(c).get("points", 0)), False,
                                    f"✗ not graded: {message}") for c in source.cells if is_check(c)]
    return SubmissionResult(str(path), exercise, 0, sum(q.max_points for q in questions), questions, [message])


def grade_notebook(path: str | Path, solutions: str | Path = SOLUTIONS, cell_timeout: float = CELL_TIMEOUT,
                   total_timeout: float = TOTAL_TIMEOUT, locked_timeout: float = LOCKED_TIMEOUT) -> SubmissionResult:
    """Grade one submission. Never raises for a bad submission: problems become messages and feedback."""
    path = Path(path)
    start = time.perf_counter()
    known = _solutions(Path(solutions))
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # unreadable file: report, do not stop the batch
        name = identify_exercise(None, path, known)
        source = nbformat.read(known[name], as_version=4) if name else None
        return _failed(path, name, source, f"not a readable notebook ({type(exc).__name__}: {first_line(exc)})")
    name = identify_exercise(nb, path, known)
    if name is None:
        return _failed(path, None, None, "not one of the course's exercises (no matching solution notebook).")
    source = nbformat.read(known[name], as_version=4)
    try:
        plan, messages = plan_cells(nb, source, cell_timeout, locked_timeout)
        with tempfile.TemporaryDirectory(prefix="grade-") as tmp:
            shutil.copy(path, Path(tmp) / path.name)
            outcomes = run_cells(plan, Path(tmp), total_timeout, messages)
        questions = _score(source, plan, outcomes)
    except Exception as exc:  # a grader bug must not stop the batch either
        result = _failed(path, name, source, f"grader error ({type(exc).__name__}: {first_line(exc)})")
        result.seconds = round(time.perf_counter() - start, 1)
        return result
    return SubmissionResult(str(path), name, sum(q.points for q in questions), sum(q.max_points for q in questions),
                            questions, messages, round(time.perf_counter() - start, 1))


def expand(paths: list[str]) -> tuple[list[Path], list[str]]:
    """Notebooks named by ``paths`` (folders give their ``*.ipynb``), and one message per path that gives none."""
    found, problems = [], []
    for p in map(Path, paths):
        if p.is_dir():
            nbs = sorted(x for x in p.glob("*.ipynb") if x.is_file())
            if not nbs:
                problems.append(f"{p}: no .ipynb files in this folder")
            found += nbs
        elif p.is_file():
            found.append(p)
        else:
            problems.append(f"{p}: no such file or folder")
    return found, problems


def write_csv(results: list[SubmissionResult], path: str | Path) -> None:
    """A gradebook: one row per submission, one column per question (points earned)."""
    ids: list[str] = []
    for r in results:
        ids += [q.id for q in r.questions if q.id not in ids]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["notebook", "exercise", "score", "max_score", *ids, "messages"])
        for r in results:
            pts = {q.id: q.points for q in r.questions}
            w.writerow([r.notebook, r.exercise or "", r.score, r.max_score, *[pts.get(i, "") for i in ids],
                        " | ".join(r.messages)])


def _human(r: SubmissionResult) -> str:
    lines = [f"{r.notebook}: {r.score}/{r.max_score}  ({r.exercise or 'unknown exercise'}, {r.seconds:.1f} s)"]
    lines += [f"  {q.id}: {q.points}/{q.max_points}  {q.feedback}" for q in r.questions]
    lines += [f"  note: {m}" for m in r.messages]
    return "\n".join(lines)


def _progress(done: int, total: int, name: str, width: int = 24) -> None:
    filled = int(width * done / total) if total else width
    print(f"grading [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {name}", file=sys.stderr, flush=True)


def run_grade(paths: list[str], as_json: bool = False, csv_path: str | None = None, solutions: str | None = None,
              cell_timeout: float = CELL_TIMEOUT, total_timeout: float = TOTAL_TIMEOUT,
              locked_timeout: float = LOCKED_TIMEOUT) -> int:
    """CLI entry. Returns 0 when every path named a notebook (whatever the scores), 1 otherwise."""
    notebooks, problems = expand(paths)
    for p in problems:
        print(f"grade: {p}", file=sys.stderr)
    results = []
    for i, nb in enumerate(notebooks):
        _progress(i, len(notebooks), nb.name)
        r = grade_notebook(nb, solutions or SOLUTIONS, cell_timeout, total_timeout, locked_timeout)
        results.append(r)
        print(r.to_json() if as_json else _human(r), flush=True)
    _progress(len(notebooks), len(notebooks), "done")
    if csv_path:
        try:
            write_csv(results, csv_path)
        except OSError as exc:
            print(f"grade: could not write {csv_path}: {exc.strerror}", file=sys.stderr)
            return 1
    return 1 if problems else 0
