"""Grade exercise submissions: ``python -m course_utils grade PATH... [--json] [--csv FILE] [--jobs N] [--shard I/N]``.

The flow, one module each: ``run.py`` runs a submission's cells in its sandboxed kernel (``sandbox.py``), where a
check cell only writes evidence (``evidence.py``), copied out by the grader as the cell ends (``collect.py``);
then, the kernel gone, ``judge`` here has the trusted checker (``check.py``, with the judges of ``questions/``)
decide each question from that evidence, in this process, which imports nothing the learner wrote; then
``gradebook.py`` writes the JSON lines and the CSV. What the notebook printed, raised or computed about itself is
never trusted. Whatever a path holds, it gets one result line and a gradebook row; several submissions are graded
side by side (``--jobs``), each worker keeping one warm checker. Grades every exercise.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import resource
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from ..maintenance.repo import SOLUTIONS
from ..messages import first_line, one_line
from . import exercise_number
from .gradebook import select_shard, write_csv
from .run import (
    CELL_TIMEOUT,
    LOCKED_TIMEOUT,
    TOTAL_TIMEOUT,
    Cell,
    Grading,
    Outcome,
    plan_cells,
    prepare,
    run_cells,
)
from .sandbox import MEMORY_GIB, make_sandbox, required_in_ci
from .submission import cells_of, grade_id_of, identify_exercise, is_check, learner_of, points_of, read_submission

JUDGE_TIMEOUT = 120    # seconds the trusted checker may spend on one question's evidence
JUDGE_MEMORY = 4 * 2**30  # bytes the trusted checker may allocate for one question's evidence


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
    isolation: str = ""
    shard: str = ""
    learner: str = ""      # whose data it was graded on (the name its first cell printed)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


# ------------------------------------------------------------------------------ judging, outside the kernel
class _JudgeTimeout(Exception):
    pass


@contextmanager
def _memory_cap(extra_bytes: int = JUDGE_MEMORY):
    """This process's address space capped (soft limit) at what it uses now plus ``extra_bytes`` while judging:
    evidence that makes the checker allocate without end fails with MemoryError instead of exhausting the host."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            now = int(f.read().split()[0]) * resource.getpagesize()
    except OSError:
        yield
        return
    cap = now + extra_bytes
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def judge(plan: list[Cell], outcomes: list[Outcome], evidence: Path, learner: str | None = None) -> None:
    """Replace the outcome of every check cell that ran with the trusted checker's verdict on its evidence (the
    copies in ``evidence``, taken by the grader as each check cell ended)."""
    # torch, transformers and peft load here: only the processes that judge pay for them, not the batch's main one
    from ..lesson_setup import quiet_libraries
    from .check import verdict

    quiet_libraries()  # this is the grader's own process: no progress bars or library logs in its report
    timed = threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGALRM")
    for i, cell in enumerate(plan):
        if cell.kind != "check" or outcomes[i].status != "ok":
            continue
        if timed:
            def stop(*_):
                raise _JudgeTimeout
            old = signal.signal(signal.SIGALRM, stop)
            signal.alarm(JUDGE_TIMEOUT)
        try:
            with _memory_cap():
                result = verdict(evidence / cell.grade_id, cell.grade_id, learner)
            outcomes[i] = Outcome("ok" if result.passed else "error", result.line)
        except _JudgeTimeout:
            outcomes[i] = Outcome("error", f"✗ {cell.grade_id}: judging the evidence took over {JUDGE_TIMEOUT} s: "
                                            "no points.")
        except MemoryError:
            outcomes[i] = Outcome("error", f"✗ {cell.grade_id}: the evidence needs more memory than a course "
                                            "answer can: no points.")
        finally:
            if timed:
                signal.alarm(0)
                signal.signal(signal.SIGALRM, old)


# ------------------------------------------------------------------------------ scoring
def _score(source, plan: list[Cell], outcomes: list[Outcome]) -> list[QuestionResult]:
    by_id = {c.grade_id: o for c, o in zip(plan, outcomes) if c.grade_id}
    results = []
    for cell in source.cells:
        if not is_check(cell):
            continue
        gid = grade_id_of(cell)
        points = points_of(cell)
        outcome = by_id.get(gid, Outcome("not run", "was not run (see the notes)"))
        passed = outcome.status == "ok"
        if passed:
            feedback = outcome.detail or "✓ passed"
        else:
            feedback = outcome.detail if outcome.status == "error" else f"the check {outcome.detail}"
            if not feedback.startswith("✗"):
                feedback = f"✗ {gid}: {feedback}"
            answer = by_id.get(f"{gid}_answer")
            if answer is not None and answer.status != "ok":
                feedback += f" (your answer cell: {answer.detail})"
        results.append(QuestionResult(gid, points if passed else 0, points, passed, feedback))
    return results


def unknown_exercise(solutions) -> str:
    """The one line for a notebook that matches no solution notebook."""
    numbers = sorted(n for n in map(exercise_number, solutions) if n)
    span = f" ({numbers[0]}-{numbers[-1]})" if numbers else ""
    return (f"not one of the course's exercises{span}: no exercise's grade ids in its cells, and its name does not "
            "start with Exercise_NN_ (or NN_) for one of them.")


def _failed(path: Path, exercise, source, message: str, grading: Grading | None = None) -> SubmissionResult:
    questions = []
    if source is not None:
        questions = [QuestionResult(grade_id_of(c), 0, points_of(c), False, f"✗ not graded: {message}")
                     for c in source.cells if is_check(c)]
    return SubmissionResult(str(path), exercise, 0, sum(q.max_points for q in questions), questions, [message],
                            isolation=grading.sandbox.level if grading else "", shard=grading.shard if grading else "")


def grade_path(path: Path, grading: Grading) -> SubmissionResult:
    """Grade one submission. Never raises: problems become messages and feedback."""
    start = time.perf_counter()
    name, source = None, None
    try:
        nb, problem = read_submission(path)
        name = identify_exercise(nb, path, grading.solutions)
        source = grading.solutions.get(name)
        if problem is not None:
            return _failed(path, name, source, problem, grading)
        if name is None:
            return _failed(path, None, None, unknown_exercise(grading.solutions), grading)
        plan, messages = plan_cells(nb, source, grading.cell_timeout, grading.locked_timeout)
        if not cells_of(nb):
            messages.insert(0, "the notebook has no cells (ran the exercise's own cells only).")
        with tempfile.TemporaryDirectory(prefix="grade-", ignore_cleanup_errors=True) as tmp:
            work = Path(tmp) / "work"
            work.mkdir()
            if path.suffix == ".ipynb":
                shutil.copyfile(path, work / path.name)
            trusted = Path(tmp) / "evidence"   # the grader's copies, outside the sandbox's one folder
            learner = learner_of(nb, path)
            outcomes = run_cells(plan, work, grading, messages, trusted, learner)
            judge(plan, outcomes, trusted, learner)
        questions = _score(source, plan, outcomes)
    except Exception as exc:  # noqa: BLE001 - a grader bug must not stop the batch either
        result = _failed(path, name, source, f"grader error ({type(exc).__name__}: {first_line(str(exc))})", grading)
        result.seconds = round(time.perf_counter() - start, 1)
        return result
    return SubmissionResult(str(path), name, sum(q.points for q in questions), sum(q.max_points for q in questions),
                            questions, messages, round(time.perf_counter() - start, 1), grading.sandbox.level,
                            grading.shard, learner)


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


def _human(r: SubmissionResult) -> str:
    lines = [f"{r.notebook}: {r.score}/{r.max_score}  ({r.exercise or 'unknown exercise'}, {r.seconds:.1f} s)"]
    lines += [f"  {q.id}: {q.points}/{q.max_points}  {q.feedback}" for q in r.questions]
    lines += [f"  note: {m}" for m in r.messages]
    return "\n".join(lines)


def _progress(done: int, total: int, name: str, width: int = 24) -> None:
    filled = int(width * done / total) if total else width
    print(f"grading [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {name}", file=sys.stderr, flush=True)


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def grade_all(notebooks: list[Path], grading: Grading, jobs: int = 1):
    """Yield one result per notebook, in order, grading up to ``jobs`` side by side (a process each)."""
    if jobs <= 1 or len(notebooks) <= 1:
        for nb in notebooks:
            yield grade_path(nb, grading)
        return
    context = multiprocessing.get_context("spawn")  # no fork of a process that may hold ZeroMQ threads
    with ProcessPoolExecutor(max_workers=min(jobs, len(notebooks)), mp_context=context) as pool:
        futures = [pool.submit(grade_path, nb, grading) for nb in notebooks]
        for nb, future in zip(notebooks, futures):
            try:
                yield future.result()
            except Exception as exc:  # noqa: BLE001 - a worker process died: this path still gets its line
                yield _failed(nb, None, None, f"grader worker failed ({type(exc).__name__}: "
                                              f"{first_line(str(exc))})", grading)


def shared_learners(results) -> list[str]:
    """One warning per learner name that several submissions of one exercise were graded on: they share data,
    so numbers copied between them would pass (a renamed copy, or an edited first-cell output)."""
    seen: dict[tuple, list[str]] = {}
    for r in results:
        if r.learner and r.exercise:
            seen.setdefault((r.exercise, r.learner), []).append(Path(r.notebook).name)
    return [f"{len(names)} submissions of {exercise} were made for learner {learner!r} (same data): "
            f"{', '.join(names)}" for (exercise, learner), names in seen.items() if len(names) > 1]


def run_grade(paths: list[str], as_json: bool = False, csv_path: str | None = None, solutions: str | None = None,
              cell_timeout: float = CELL_TIMEOUT, total_timeout: float = TOTAL_TIMEOUT,
              locked_timeout: float = LOCKED_TIMEOUT, jobs: int | None = None, shard: str | None = None,
              memory_gib: float = MEMORY_GIB, unsafe: bool = False) -> int:
    """CLI entry. Returns 0 when every path named a notebook (whatever the scores), 1 otherwise (and 1, with one
    line, before grading anything when submissions cannot be sandboxed and ``unsafe`` was not asked for)."""
    sandbox = make_sandbox(memory_gib, unsafe=unsafe)
    stop = required_in_ci(sandbox) or sandbox.refusal()
    if stop:
        print(stop, file=sys.stderr)
        return 1
    if sandbox.warning():
        print(sandbox.warning(), file=sys.stderr)
    notebooks, problems = expand(paths)
    if shard:
        try:
            notebooks = select_shard(notebooks, shard)
        except ValueError as exc:
            print(f"grade: {exc}", file=sys.stderr)
            return 2
    for p in problems:
        print(f"grade: {p}", file=sys.stderr)
    results = []
    try:
        grading = prepare(solutions or SOLUTIONS, sandbox, cell_timeout, locked_timeout,
                          total_timeout, shard or "")
        stream = grade_all(notebooks, grading, jobs or default_jobs())
    except (ValueError, OSError, nbformat.ValidationError) as exc:
        reason = one_line(exc)  # the name ``exc`` is gone after this block; the generator below needs the text
        print(f"grade: cannot grade: {reason}", file=sys.stderr)
        problems.append(reason)
        stream = (_failed(nb, None, None, f"not graded: {reason}") for nb in notebooks)
    for i, r in enumerate(stream):
        results.append(r)
        print(r.to_json() if as_json else _human(r), flush=True)
        _progress(i + 1, len(notebooks), notebooks[i].name)
    _progress(len(notebooks), len(notebooks), "done")
    for line in shared_learners(results):
        print(f"grade: {line}", file=sys.stderr)
    if csv_path:
        try:
            write_csv(results, csv_path)
        except OSError as exc:
            print(f"grade: could not write {csv_path}: {exc.strerror}", file=sys.stderr)
            return 1
    return 1 if problems else 0
