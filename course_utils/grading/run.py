"""Running one submission's cells in its sandboxed kernel: what to run, and running it.

``plan_cells`` takes the locked cells (imports, given code, check cells) from the solution notebook, matched by
nbgrader ``grade_id`` (edited ones are restored, deleted ones re-inserted after their answer, reordered cells run
in the exercise's order), so only the answer cells are the learner's. ``run_cells`` runs the plan in a fresh
kernel inside the submission's sandbox (``sandbox.py``); a cell that fails, loops forever (per-cell timeout) or
kills the kernel (the kernel is restarted and the earlier cells replayed) costs only its own question. In the
kernel a check cell only writes evidence; right after it, ``collect.py`` copies that evidence into a folder of the
grader's. Judging it is ``grader.py``'s (with ``check.py``), after the kernel has ended. Reading a submission
never raises: whatever a file holds, ``read_submission`` and ``identify_exercise`` say what it is.
"""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from ..learner import LEARNER_ENV, learner_in_outputs
from ..maintenance.notebook_env import ENV
from ..maintenance.repo import SOLUTIONS
from ..messages import first_line, one_line
from . import EVIDENCE_ENV, EXERCISE_GLOB, exercise_number
from .collect import collect
from .sandbox import Sandbox, make_sandbox

CELL_TIMEOUT = 60      # seconds for one learner-written cell
LOCKED_TIMEOUT = 120   # seconds for one cell the instructor wrote (imports, given code, checks)
TOTAL_TIMEOUT = 600    # seconds for a whole submission
MAX_RESTARTS = 3       # kernel restarts (after a timeout or a crash) per submission
BIG_OUTPUT = 1_000_000  # bytes of output from one cell worth a message (and the most kept of it)
EVIDENCE = ".evidence"  # the folder, inside the submission's work folder, that check cells write to
_CHECK_IMPORT = "from course_utils.grading.checks import check  # restored by the grader\n"
_GRADER_LINE = "import os as _os; _os.environ.update({env!r}); del _os  # set by the grader\n"


@dataclass
class Cell:
    source: str
    kind: str          # "given", "answer", "check", "extra"
    grade_id: str = ""
    timeout: float = CELL_TIMEOUT


@dataclass
class Outcome:
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
    """Read every solution notebook in ``solutions`` (Exercise_NN_name.ipynb)."""
    paths = sorted(Path(solutions).glob(EXERCISE_GLOB)) if Path(solutions).is_dir() else []
    if not paths:
        raise ValueError(f"no solution notebooks (Exercise_NN_name.ipynb) in {solutions}: pass --solutions DIR")
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


def is_check(cell) -> bool:
    meta = _nbgrader(cell)
    return _is_code(cell) and meta.get("grade") is True and meta.get("solution") is not True


def points_of(cell) -> int:
    pts = _nbgrader(cell).get("points", 0)
    return int(pts) if isinstance(pts, (int, float)) and not isinstance(pts, bool) else 0


def cells_of(nb) -> list:
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
    """The solution stem a submission belongs to: its metadata, then its grade_ids (``ex06_q1``), then the exercise
    number its file name starts with (``Exercise_06_...``, or the older ``06_...``), then, in nbgrader's layout
    (``submitted/STUDENT/ASSIGNMENT/x.ipynb``), the number of its assignment folder (``ex06``)."""
    by_number = {exercise_number(name): name for name in names}
    meta = nb.get("metadata") if isinstance(nb, dict) else None
    stem = meta.get("course_exercise") if isinstance(meta, dict) else None
    if isinstance(stem, str) and stem in by_number.values():
        return stem
    prefixes = {grade_id_of(c).split("_")[0] for c in cells_of(nb) if grade_id_of(c)}
    for number, name in by_number.items():
        if f"ex{number}" in prefixes:
            return name
    candidates = [path.stem]
    if len(path.parts) >= 4 and path.parts[-4] in ("submitted", "autograded"):
        candidates.append(path.parts[-2])
    return next((by_number[n] for n in map(exercise_number, candidates) if n in by_number), None)


# ------------------------------------------------------------------------------ what to run
def plan_cells(submission, source, cell_timeout: float = CELL_TIMEOUT,
               locked_timeout: float = LOCKED_TIMEOUT) -> tuple[list[Cell], list[str]]:
    """The code cells to run, in the exercise's order, with the locked cells taken from ``source``."""
    messages: list[str] = []
    src_cells = [c for c in source.cells if c.cell_type == "code"]
    known = {grade_id_of(c) for c in src_cells}
    mine: dict[str, str] = {}
    extras: dict[str, list[str]] = {}
    anchor, order = "", []
    for cell in cells_of(submission):
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
    plan = [Cell(s, "extra", timeout=cell_timeout) for s in extras.get("", [])]
    setup = ""
    for cell in src_cells:
        gid = grade_id_of(cell)
        if _is_answer(cell):
            if gid in mine:
                plan.append(Cell(mine[gid], "answer", gid, cell_timeout))
            else:
                messages.append(f"answer cell {gid} is missing (deleted, or its metadata removed).")
        else:
            kind = "check" if is_check(cell) else "given"
            if gid not in mine:
                messages.append(f"{kind} cell {gid} was deleted: restored it.")
            elif mine[gid].strip() != cell.source.strip():
                messages.append(f"{kind} cell {gid} was edited: ran the original.")
            code = (_CHECK_IMPORT + cell.source) if kind == "check" else _course_imports(setup, cell.source) + cell.source
            setup = setup or cell.source   # the first given cell is the setup: it imports what later ones call
            plan.append(Cell(code, kind, gid, locked_timeout))
        plan += [Cell(s, "extra", timeout=cell_timeout) for s in extras.get(gid, [])]
    return plan, messages


def _course_imports(setup: str, cell: str) -> str:
    """The names ``cell`` uses that the setup cell imports from the course package, imported again as its first
    lines: a learner's cell that rebound one (``teammate_update = lambda p: True``) cannot change what a given
    cell calls. Names the given cell does not use stay as the learner left them."""
    try:
        used = {n.id for n in ast.walk(ast.parse(cell)) if isinstance(n, ast.Name)}
        tree = ast.parse(setup)
    except SyntaxError:
        return ""
    lines = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("course_utils"):
            names = [a.name for a in node.names if (a.asname or a.name) in used and a.asname is None]
            if names:
                lines.append(f"from {node.module} import {', '.join(names)}  # restored by the grader\n")
    return "".join(lines)


# ------------------------------------------------------------------------------ running
class _Restart(Exception):
    pass


class _OutOfTime(Exception):
    pass


def _outcome_of(cell) -> Outcome:
    """The cell's first error as a one-line outcome, or ok (its size is counted by ``_CappedClient``)."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            ename, evalue = out.get("ename", "Error"), first_line(out.get("evalue", ""))
            return Outcome("error", evalue if ename == "CheckFailed" else f"{ename}: {evalue}".rstrip(": "))
    return Outcome("ok")


class _CappedClient(NotebookClient):
    """nbclient's client, keeping at most BIG_OUTPUT bytes of each cell's output (the rest is counted only)."""

    def output(self, outs, msg, display_id, cell_index):
        sizes = self.__dict__.setdefault("output_sizes", {})
        size = len(json.dumps(msg.get("content", {}), ensure_ascii=False))
        sizes[cell_index] = sizes.get(cell_index, 0) + size
        if sizes[cell_index] > BIG_OUTPUT and msg.get("msg_type") != "error":
            return None
        return super().output(outs, msg, display_id, cell_index)


def _cell_source(cell: Cell, evidence: Path, learner: str) -> str:
    """A locked cell runs with the grader's evidence folder and learner name set (what learner code before it
    set is replaced); an answer or extra cell runs as written."""
    if cell.kind not in ("check", "given"):
        return cell.source
    return _GRADER_LINE.format(env={EVIDENCE_ENV: str(evidence), LEARNER_ENV: learner}) + cell.source


def learner_of(nb, path: Path) -> str:
    """Whose data a submission holds: the name its first cell printed; else, in nbgrader's layout
    (``submitted/STUDENT/ASSIGNMENT/x.ipynb``), the student; else the file's name."""
    texts = []
    for cell in cells_of(nb)[:8]:
        outputs = cell.get("outputs") if isinstance(cell.get("outputs"), list) else []
        texts += [_text(o.get("text")) for o in outputs if isinstance(o, dict)]
    found = learner_in_outputs(texts)
    if found:
        return found
    parts = path.parts
    candidate = parts[-3] if len(parts) >= 4 and parts[-4] in ("submitted", "autograded") else path.stem
    cleaned = re.sub(r"[^A-Za-z0-9._@+-]", "_", candidate)[:64].lstrip("._@+-")
    return cleaned or "learner"


def run_cells(cells: list[Cell], workdir: Path, grading: Grading, messages: list[str] | None = None,
              evidence_to: Path | None = None, learner: str = "learner") -> list[Outcome]:
    """Run ``cells`` in a fresh sandboxed kernel in ``workdir`` on ``learner``'s data; a hung or fatal cell is
    skipped after a restart.

    Right after each check cell, its question's evidence is copied into ``evidence_to`` (a folder of the grader's,
    out of the kernel's reach): what later cells do cannot change it. So is a given cell's snapshot of the
    folders it made (``evidence.record_given``), taken before any answer can change them."""
    os.environ.update(ENV)
    return _Run(cells, workdir, grading, messages if messages is not None else [], evidence_to, learner).all()


class _Run:
    """One submission's run: kernels started in turn, each replaying the cells before a restart."""

    def __init__(self, cells, workdir, grading, messages, evidence_to, learner):
        self.cells, self.workdir, self.grading, self.messages = cells, workdir, grading, messages
        self.evidence_to, self.learner = evidence_to, learner
        self.evidence = workdir / EVIDENCE
        self.deadline = time.monotonic() + grading.total_timeout
        self.outcomes = [Outcome("not run", "was not run (see the notes)") for _ in cells]
        self.bad: set[int] = set()
        self.start_at = 0

    def all(self) -> list[Outcome]:
        restarts = 0
        while self.start_at < len(self.cells):
            try:
                self._one_kernel()
            except _Restart:
                restarts += 1
                if restarts > MAX_RESTARTS:
                    self.messages.append(f"stopped after {MAX_RESTARTS} kernel restarts; later cells were not run.")
                    break
                self.messages.append("restarted the kernel and replayed the earlier cells.")
            except _OutOfTime:
                if not self.messages or "replaying" not in self.messages[-1]:
                    self.messages.append(f"the submission reached its {self.grading.total_timeout:.0f} s total limit; "
                                         "later cells were not run.")
                break
            except RuntimeError as exc:  # the kernel would not start
                self.messages.append(f"could not start a kernel: {first_line(exc)}")
                break
        return self.outcomes

    def _one_kernel(self) -> None:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(_cell_source(c, self.evidence, self.learner))
                                             for c in self.cells])
        spec_dir = tempfile.mkdtemp(prefix="grade-kernel-")
        box = self.grading.sandbox.for_this_process()
        km = box.kernel_manager(self.workdir, Path(spec_dir))
        client = _CappedClient(nb, km=km, allow_errors=True, record_timing=False, shutdown_kernel="immediate",
                               startup_timeout=120, resources={"metadata": {"path": str(self.workdir)}})
        try:
            with client.setup_kernel(cleanup_kc=True):
                self._replay(client, nb)
                self._go_on(client, nb)
        finally:
            if km.has_kernel:  # the client leaves a kernel it did not create running
                run_sync(km.shutdown_kernel)(now=True)
            box.release(self.workdir)  # whatever the kernel left running ends here, with its control group
            shutil.rmtree(spec_dir, ignore_errors=True)

    def _run(self, client, nb, i: int) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 1:
            raise _OutOfTime
        client.timeout = max(1, int(min(self.cells[i].timeout, remaining)))
        client.execute_cell(nb.cells[i], i)
        cell = self.cells[i]
        if cell.kind in ("check", "given") and cell.grade_id and self.evidence_to is not None:
            target = self.evidence_to / cell.grade_id
            shutil.rmtree(target, ignore_errors=True)
            collect(self.evidence, cell.grade_id, target)

    def _where(self, i: int) -> str:
        return f"{self.cells[i].kind} cell{' ' + self.cells[i].grade_id if self.cells[i].grade_id else ''}"

    def _replay(self, client, nb) -> None:
        """Run again what ran before a restart (its outcomes stand)."""
        for i in range(self.start_at):
            if i in self.bad:
                continue
            try:
                self._run(client, nb, i)
            except (CellTimeoutError, DeadKernelError) as exc:
                what = "ran past its time limit" if isinstance(exc, CellTimeoutError) else "killed the kernel"
                self.messages.append(f"while replaying the earlier cells after a restart, the {self._where(i)} "
                                     f"{what} this time; later cells were not run.")
                raise _OutOfTime from None
            nb.cells[i].outputs = []

    def _go_on(self, client, nb) -> None:
        for i in range(self.start_at, len(self.cells)):
            try:
                self._run(client, nb, i)
            except CellTimeoutError:
                self._timed_out(client, i)
                return
            except DeadKernelError:
                self.outcomes[i] = Outcome("died", "the kernel died while running it (os._exit, a crash, or out of "
                                                   "memory)")
                self._restart_after(i)
            self.outcomes[i] = _outcome_of(nb.cells[i])
            size = client.__dict__.get("output_sizes", {}).get(i, 0)
            if size > BIG_OUTPUT:
                self.messages.append(f"a {self._where(i)} printed {size / 1e6:.1f} MB of output (not kept).")
            nb.cells[i].outputs = []
        self.start_at = len(self.cells)

    def _timed_out(self, client, i: int) -> None:
        total = self.grading.total_timeout
        if client.timeout < self.cells[i].timeout:  # the submission's total time ran out, not the cell's
            self.outcomes[i] = Outcome("timeout", f"was stopped when the submission reached its {total:.0f} s "
                                                  "total limit")
            self.messages.append(f"the submission reached its {total:.0f} s total limit; later cells were not run.")
            self.start_at = len(self.cells)
            return
        self.outcomes[i] = Outcome("timeout", f"ran past its {client.timeout} s limit (an endless loop?) and was "
                                              "stopped")
        self._restart_after(i)

    def _restart_after(self, i: int):
        self.bad.add(i)
        self.start_at = i + 1
        raise _Restart
