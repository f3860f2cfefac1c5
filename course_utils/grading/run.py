"""Running one submission's cells in its sandboxed kernel: what to run, and running it.

``plan_cells`` takes the locked cells (imports, given code, check cells) from the solution notebook, matched by
nbgrader ``grade_id`` (edited ones are restored, deleted ones re-inserted after their answer, reordered cells run
in the exercise's order), so only the answer cells are the learner's. ``run_cells`` runs the plan in a fresh
kernel inside the submission's sandbox (``sandbox.py``); a cell that fails, loops forever (per-cell timeout) or
kills the kernel (the kernel is restarted and the earlier cells replayed) costs only its own question. In the
kernel a check cell only writes evidence; right after it, ``collect.py`` copies that evidence into a folder of the
grader's. Judging it is ``grader.py``'s (with ``check.py``), after the kernel has ended. Reading a submission
never raises: whatever a file holds, ``submission.py`` says what it is.
"""
from __future__ import annotations

import ast
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from ..learner import LEARNER_ENV
from ..maintenance.notebook_env import ENV
from ..maintenance.repo import SOLUTIONS
from ..messages import first_line
from . import EVIDENCE_ENV, EXERCISE_GLOB
from .collect import collect
from .sandbox import Sandbox, make_sandbox
from .submission import cells_of, grade_id_of, is_answer, is_check, is_code, text_of

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
        if not is_code(cell):
            continue
        gid, text = grade_id_of(cell), text_of(cell.get("source"))
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
        if is_answer(cell):
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
