"""Grade exercise submissions: ``python -m course_utils grade PATH... [--json] [--csv FILE] [--jobs N] [--shard I/N]``.

Each submission runs in a fresh kernel inside its own sandbox (``sandbox.py``: bubblewrap, an unprivileged uid
with no capabilities, a fresh writable folder, no network, limits), several side by side (``--jobs``). The check
cells come from the solution notebook, matched by nbgrader ``grade_id`` (edited ones are restored, deleted ones
re-inserted after their answer, reordered cells run in the exercise's order), so only the answer cells are the
learner's. In the kernel a check cell only writes evidence (``evidence.py``) into the submission's folder. When the
kernel has ended, this process (trusted, outside the sandbox) judges each question's evidence with ``check.py``:
what the notebook printed, raised or computed about itself is never trusted. A cell that fails, loops forever
(per-cell timeout) or kills the kernel (the kernel is restarted and the earlier cells replayed) costs only its
own question. Whatever a path holds, it gets one result line and a gradebook row. Grades exercises 1-7.
"""
from __future__ import annotations

import ast
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
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from ..maintenance.notebook_env import ENV
from ..maintenance.repo import SOLUTIONS
from ..messages import first_line, one_line
from . import EVIDENCE_ENV
from .collect import collect
from .gradebook import select_shard, write_csv
from .sandbox import MEMORY_GIB, Sandbox, make_sandbox, required_in_ci

CELL_TIMEOUT = 60      # seconds for one learner-written cell
LOCKED_TIMEOUT = 120   # seconds for one cell the instructor wrote (imports, given code, checks)
TOTAL_TIMEOUT = 600    # seconds for a whole submission
MAX_RESTARTS = 3       # kernel restarts (after a timeout or a crash) per submission
BIG_OUTPUT = 1_000_000  # bytes of output from one cell worth a message (and the most kept of it)
JUDGE_TIMEOUT = 120    # seconds the trusted checker may spend on one question's evidence
JUDGE_MEMORY = 4 * 2**30  # bytes the trusted checker may allocate for one question's evidence
EVIDENCE = ".evidence"  # the folder, inside the submission's work folder, that check cells write to
_CHECK_IMPORT = "from course_utils.grading.checks import check  # restored by the grader\n"
_EVIDENCE_LINE = "import os as _os; _os.environ[{env!r}] = {folder!r}; del _os  # set by the grader\n"


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

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


@dataclass
class _Cell:
    source: str
    kind: str          # "given", "answer", "check", "extra"
    grade_id: str = ""
    timeout: float = CELL_TIMEOUT
    check_args: str | None = None   # for a check cell: the keyword arguments of its check(...) call


@dataclass
class _Outcome:
    status: str        # "ok", "error", "timeout", "died", "not run"
    detail: str = ""


@dataclass(frozen=True)
class Grading:
    """What a batch fixes before its first submission runs: the solutions and the sandbox."""
    solutions: dict
    sandbox: Sandbox
    cell_timeout: float = CELL_TIMEOUT
    locked_timeout: float = LOCKED_TIMEOUT
    total_timeout: float = TOTAL_TIMEOUT
    shard: str = ""


def prepare(solutions: str | Path = SOLUTIONS, sandbox: Sandbox | None = None,
            cell_timeout: float = CELL_TIMEOUT, locked_timeout: float = LOCKED_TIMEOUT,
            total_timeout: float = TOTAL_TIMEOUT, shard: str = "") -> Grading:
    """Read every solution notebook in ``solutions`` (NN_name.ipynb)."""
    paths = sorted(Path(solutions).glob("[0-9]*.ipynb")) if Path(solutions).is_dir() else []
    if not paths:
        raise ValueError(f"no solution notebooks (NN_name.ipynb) in {solutions}: pass --solutions DIR")
    read = {p.stem: nbformat.read(p, as_version=4) for p in paths}
    return Grading(read, sandbox or make_sandbox(), cell_timeout, locked_timeout, total_timeout, shard)


# ------------------------------------------------------------------------------ reading whatever a file holds
def _text(source) -> str:
    if isinstance(source, str):
        return source
    if isinstance(source, list):
        return "".join(s for s in source if isinstance(s, str))
    return ""


def _nbgrader(cell) -> dict:
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    nbg = meta.get("nbgrader") if isinstance(meta, dict) else None
    return nbg if isinstance(nbg, dict) else {}


def grade_id_of(cell) -> str:
    gid = _nbgrader(cell).get("grade_id")
    return gid if isinstance(gid, str) else ""


def _is_code(cell) -> bool:
    return isinstance(cell, dict) and cell.get("cell_type") == "code"


def _is_answer(cell) -> bool:
    return _is_code(cell) and _nbgrader(cell).get("solution") is True


def _is_check(cell) -> bool:
    meta = _nbgrader(cell)
    return _is_code(cell) and meta.get("grade") is True and meta.get("solution") is not True


def _points(cell) -> int:
    pts = _nbgrader(cell).get("points", 0)
    return int(pts) if isinstance(pts, (int, float)) and not isinstance(pts, bool) else 0


def _cells(nb) -> list:
    cells = nb.get("cells") if isinstance(nb, dict) else None
    return [c for c in cells if isinstance(c, dict)] if isinstance(cells, list) else []


def read_submission(path: Path) -> tuple[dict | None, str | None]:
    """The notebook's JSON object, or None and a one-line reason; never raises."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"could not read the file ({one_line(exc)})"
    if not data.strip():
        return None, "an empty file: not a notebook (save it from Jupyter and hand it in again)"
    try:
        nb = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not a readable notebook (not UTF-8 text)"
    except json.JSONDecodeError as exc:
        return None, f"not a readable notebook (invalid JSON: {exc.msg} at line {exc.lineno})"
    except RecursionError:
        return None, "not a readable notebook (JSON nested too deeply)"
    if not isinstance(nb, dict):
        return None, f"not a notebook (its JSON is a {type(nb).__name__}, not an object with cells)"
    return nb, None


def identify_exercise(nb, path: Path, names) -> str | None:
    """The solution stem a submission belongs to: its metadata, then its grade_ids, then its file name."""
    names = list(names)
    meta = nb.get("metadata") if isinstance(nb, dict) else None
    stem = meta.get("course_exercise") if isinstance(meta, dict) else None
    if isinstance(stem, str) and stem in names:
        return stem
    prefixes = {grade_id_of(c).split("_")[0] for c in _cells(nb) if grade_id_of(c)}
    for name in names:
        if f"ex{name[:2]}" in prefixes:
            return name
    for name in names:
        if path.stem.startswith(name) or path.stem.startswith(name[:3]):
            return name
    return None


# ------------------------------------------------------------------------------ what to run
def check_args(source: str, gid: str) -> str | None:
    """The keyword arguments of the ``check(gid, ...)`` call in a check cell, as source (``a=(a), b=(b)``)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "check"
                and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == gid):
            if any(k.arg is None for k in node.keywords):
                return None
            return ", ".join(f"{k.arg}=({ast.get_source_segment(source, k.value)})" for k in node.keywords)
    return None


def plan_cells(submission, source, cell_timeout: float = CELL_TIMEOUT,
               locked_timeout: float = LOCKED_TIMEOUT) -> tuple[list[_Cell], list[str]]:
    """The code cells to run, in the exercise's order, with the locked cells taken from ``source``."""
    messages: list[str] = []
    src_cells = [c for c in source.cells if c.cell_type == "code"]
    known = {grade_id_of(c) for c in src_cells}
    mine: dict[str, str] = {}
    extras: dict[str, list[str]] = {}
    anchor, order = "", []
    for cell in _cells(submission):
        if not _is_code(cell):
            continue
        gid, text = grade_id_of(cell), _text(cell.get("source"))
        if gid in known and gid not in mine:
            mine[gid] = text
            order.append(gid)
            anchor = gid
        elif text.strip():
            if gid in known:
                messages.append(f"cell {gid} appears twice: ran only the first copy.")
                continue
            extras.setdefault(anchor, []).append(text)
    expected = [grade_id_of(c) for c in src_cells if grade_id_of(c) in mine]
    if order != expected:
        messages.append("cells were moved: ran them in the exercise's order.")
    plan = [_Cell(s, "extra", timeout=cell_timeout) for s in extras.get("", [])]
    for cell in src_cells:
        gid = grade_id_of(cell)
        if _is_answer(cell):
            if gid in mine:
                plan.append(_Cell(mine[gid], "answer", gid, cell_timeout))
            else:
                messages.append(f"answer cell {gid} is missing (deleted, or its metadata removed).")
        else:
            kind = "check" if _is_check(cell) else "given"
            if gid not in mine:
                messages.append(f"{kind} cell {gid} was deleted: restored it.")
            elif mine[gid].strip() != cell.source.strip():
                messages.append(f"{kind} cell {gid} was edited: ran the original.")
            code = (_CHECK_IMPORT + cell.source) if kind == "check" else cell.source
            args = check_args(cell.source, gid) if kind == "check" else None
            plan.append(_Cell(code, kind, gid, locked_timeout, args))
        plan += [_Cell(s, "extra", timeout=cell_timeout) for s in extras.get(gid, [])]
    return plan, messages


# ------------------------------------------------------------------------------ running
class _Restart(Exception):
    pass


class _OutOfTime(Exception):
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


class _CappedClient(NotebookClient):
    """nbclient's client, keeping at most BIG_OUTPUT bytes of each cell's output (the rest is counted only)."""

    def output(self, outs, msg, display_id, cell_index):
        sizes = self.__dict__.setdefault("output_sizes", {})
        size = len(json.dumps(msg.get("content", {}), ensure_ascii=False))
        sizes[cell_index] = sizes.get(cell_index, 0) + size
        if sizes[cell_index] > BIG_OUTPUT and msg.get("msg_type") != "error":
            return None
        return super().output(outs, msg, display_id, cell_index)


def _cell_source(cell: _Cell, evidence: Path) -> str:
    if cell.kind != "check":
        return cell.source
    return _EVIDENCE_LINE.format(env=EVIDENCE_ENV, folder=str(evidence)) + cell.source


def run_cells(cells: list[_Cell], workdir: Path, grading: Grading, messages: list[str] | None = None,
              evidence_to: Path | None = None) -> list[_Outcome]:
    """Run ``cells`` in a fresh sandboxed kernel in ``workdir``; a hung or fatal cell is skipped after a restart.

    Right after each check cell, its question's evidence is copied into ``evidence_to`` (a folder of the grader's,
    out of the kernel's reach): what later cells do cannot change it."""
    messages = messages if messages is not None else []
    os.environ.update(ENV)
    evidence = workdir / EVIDENCE
    total = grading.total_timeout
    deadline = time.monotonic() + total
    outcomes = [_Outcome("not run", "was not run (see the notes)") for _ in cells]
    bad: set[int] = set()
    start_at, restarts = 0, 0
    while start_at < len(cells):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(_cell_source(c, evidence)) for c in cells])
        spec_dir = tempfile.mkdtemp(prefix="grade-kernel-")
        box = grading.sandbox.for_this_process()
        km = box.kernel_manager(workdir, Path(spec_dir))
        client = _CappedClient(nb, km=km, allow_errors=True, record_timing=False,
                               shutdown_kernel="immediate", startup_timeout=120,
                               resources={"metadata": {"path": str(workdir)}})

        def limit(i: int, client=client) -> None:
            remaining = deadline - time.monotonic()
            if remaining <= 1:
                raise _OutOfTime
            client.timeout = max(1, int(min(cells[i].timeout, remaining)))

        def run(i: int, client=client, nb=nb) -> None:
            limit(i)
            client.execute_cell(nb.cells[i], i)
            if cells[i].kind == "check" and evidence_to is not None:
                target = evidence_to / cells[i].grade_id
                shutil.rmtree(target, ignore_errors=True)
                collect(evidence, cells[i].grade_id, target)

        def where(i: int) -> str:
            return f"{cells[i].kind} cell{' ' + cells[i].grade_id if cells[i].grade_id else ''}"

        try:
            with client.setup_kernel(cleanup_kc=True):
                for i in range(start_at):  # replay what ran before the restart
                    if i not in bad:
                        try:
                            run(i)
                        except (CellTimeoutError, DeadKernelError) as exc:
                            what = "ran past its time limit" if isinstance(exc, CellTimeoutError) else "killed the kernel"
                            messages.append(f"while replaying the earlier cells after a restart, the {where(i)} "
                                            f"{what} this time; later cells were not run.")
                            raise _OutOfTime from None
                        nb.cells[i].outputs = []
                for i in range(start_at, len(cells)):
                    try:
                        run(i)
                        outcomes[i], _ = _outcome_of(nb.cells[i])
                        size = client.__dict__.get("output_sizes", {}).get(i, 0)
                        if size > BIG_OUTPUT:
                            messages.append(f"a {where(i)} printed {size / 1e6:.1f} MB of output (not kept).")
                    except CellTimeoutError:
                        if client.timeout < cells[i].timeout:  # the submission's total time ran out, not the cell's
                            outcomes[i] = _Outcome("timeout", f"was stopped when the submission reached its {total:.0f} s "
                                                              "total limit")
                            messages.append(f"the submission reached its {total:.0f} s total limit; later cells "
                                            "were not run.")
                            start_at = len(cells)
                            break
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
                    nb.cells[i].outputs = []
                start_at = len(cells)
        except _Restart:
            restarts += 1
            if restarts > MAX_RESTARTS:
                messages.append(f"stopped after {MAX_RESTARTS} kernel restarts; later cells were not run.")
                break
            messages.append("restarted the kernel and replayed the earlier cells.")
        except _OutOfTime:
            if not messages or "replaying" not in messages[-1]:
                messages.append(f"the submission reached its {total:.0f} s total limit; later cells were not run.")
            break
        except RuntimeError as exc:  # the kernel would not start
            messages.append(f"could not start a kernel: {first_line(exc)}")
            break
        finally:
            if km.has_kernel:  # the client leaves a kernel it did not create running
                run_sync(km.shutdown_kernel)(now=True)
            box.release(workdir)  # whatever the kernel left running ends here, with its control group
            shutil.rmtree(spec_dir, ignore_errors=True)
    return outcomes


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


def judge(plan: list[_Cell], outcomes: list[_Outcome], evidence: Path) -> None:
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
                result = verdict(evidence / cell.grade_id, cell.grade_id)
            outcomes[i] = _Outcome("ok" if result.passed else "error", result.line)
        except _JudgeTimeout:
            outcomes[i] = _Outcome("error", f"✗ {cell.grade_id}: judging the evidence took over {JUDGE_TIMEOUT} s: "
                                            "no points.")
        except MemoryError:
            outcomes[i] = _Outcome("error", f"✗ {cell.grade_id}: the evidence needs more memory than a course "
                                            "answer can: no points.")
        finally:
            if timed:
                signal.alarm(0)
                signal.signal(signal.SIGALRM, old)


# ------------------------------------------------------------------------------ scoring
def _score(source, plan: list[_Cell], outcomes: list[_Outcome]) -> list[QuestionResult]:
    by_id = {c.grade_id: o for c, o in zip(plan, outcomes) if c.grade_id}
    results = []
    for cell in source.cells:
        if not _is_check(cell):
            continue
        gid = grade_id_of(cell)
        points = _points(cell)
        outcome = by_id.get(gid, _Outcome("not run", "was not run (see the notes)"))
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


def _failed(path: Path, exercise, source, message: str, grading: Grading | None = None) -> SubmissionResult:
    questions = []
    if source is not None:
        questions = [QuestionResult(grade_id_of(c), 0, _points(c), False, f"✗ not graded: {message}")
                     for c in source.cells if _is_check(c)]
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
            return _failed(path, None, None, "not one of the course's exercises (no matching solution notebook).",
                           grading)
        plan, messages = plan_cells(nb, source, grading.cell_timeout, grading.locked_timeout)
        if not _cells(nb):
            messages.insert(0, "the notebook has no cells (ran the exercise's own cells only).")
        with tempfile.TemporaryDirectory(prefix="grade-", ignore_cleanup_errors=True) as tmp:
            work = Path(tmp) / "work"
            work.mkdir()
            if path.suffix == ".ipynb":
                shutil.copyfile(path, work / path.name)
            trusted = Path(tmp) / "evidence"   # the grader's copies, outside the sandbox's one folder
            outcomes = run_cells(plan, work, grading, messages, trusted)
            judge(plan, outcomes, trusted)
        questions = _score(source, plan, outcomes)
    except Exception as exc:  # noqa: BLE001 - a grader bug must not stop the batch either
        result = _failed(path, name, source, f"grader error ({type(exc).__name__}: {first_line(str(exc))})", grading)
        result.seconds = round(time.perf_counter() - start, 1)
        return result
    return SubmissionResult(str(path), name, sum(q.points for q in questions), sum(q.max_points for q in questions),
                            questions, messages, round(time.perf_counter() - start, 1), grading.sandbox.level,
                            grading.shard)


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
    if csv_path:
        try:
            write_csv(results, csv_path)
        except OSError as exc:
            print(f"grade: could not write {csv_path}: {exc.strerror}", file=sys.stderr)
            return 1
    return 1 if problems else 0
