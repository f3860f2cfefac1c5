"""Student copies of the exercises, generated from the solution notebooks: ``python -m course_utils exercises build``.

The solution notebooks in ``exercises/solutions/`` are the one source. They mark answers with nbgrader's
``### BEGIN SOLUTION`` / ``### END SOLUTION`` and carry nbgrader cell metadata. A student copy replaces
each answer region with a stub that sets the answer's names to None and tags each check cell
``raises-exception``; the build runs that copy once in a fresh kernel and stores what the run gives: the given
cells' outputs, nothing for the answer cells, and for each check cell the ✗ error its unanswered check raises.
Strict nbval then proves that the solutions pass and the stubs do not. Used by every exercise.

``python -m course_utils exercises release DIR`` writes the handout instead: the same copies, never run, with no
stored outputs at all (a learner sees no ✗ line before running anything), a README, and no solution.
"""
from __future__ import annotations

import ast
import copy
import re
import textwrap
import time
from pathlib import Path

import nbformat

from ..folders import staged_folder
from ..maintenance.execute import execute_into
from ..maintenance.repo import EXERCISES, SOLUTIONS
from ..messages import one_line
from . import EXERCISE_GLOB
from .checks import CHECKS

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB_COMMENT = "# YOUR CODE HERE (replace None with your answer)"
RAISES = "raises-exception"
_REGION = re.compile(rf"^([ \t]*){re.escape(BEGIN)}[^\n]*\n(.*?)^[ \t]*{re.escape(END)}[^\n]*(\n|$)",
                     re.MULTILINE | re.DOTALL)


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def is_answer(cell) -> bool:
    return cell.cell_type == "code" and bool(nbgrader_meta(cell).get("solution"))


def is_check(cell) -> bool:
    meta = nbgrader_meta(cell)
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def assigned_names(code: str) -> list[str]:
    """Names a piece of code assigns or defines at its top level, in order (``a = ...``, ``a: T = ...``, ``def a``)."""
    names: list[str] = []

    def add(target):
        if isinstance(target, ast.Name) and target.id not in names:
            names.append(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for t in target.elts:
                add(t)

    for node in ast.parse(code).body:
        if isinstance(node, ast.Assign):
            for t in node.targets:
                add(t)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            add(node.target)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name not in names:
            names.append(node.name)  # a function the learner writes: its stub is `name = None` too
    return names


def stub_for(region: str, indent: str = "") -> str:
    """What replaces one answer region: a comment and ``name = None`` for each name the answer assigns."""
    try:
        names = assigned_names(textwrap.dedent(region))
    except SyntaxError:
        names = []
    lines = [STUB_COMMENT] + [f"{n} = None" for n in names]
    if not names:
        lines.append('raise NotImplementedError("Write your answer here")')
    return "".join(f"{indent}{line}\n" for line in lines)


def strip_solutions(source: str) -> str:
    """``source`` with every BEGIN/END SOLUTION region replaced by its stub."""
    if BEGIN not in source:
        return source
    out = _REGION.sub(lambda m: stub_for(m.group(2), m.group(1)), source)
    if BEGIN in out or END in out:
        raise ValueError("unbalanced ### BEGIN SOLUTION / ### END SOLUTION markers")
    return out.rstrip("\n")


def check_id_of(cell) -> str:
    return nbgrader_meta(cell).get("grade_id", "")


def student_copy(solution) -> nbformat.NotebookNode:
    """The student version of a solution notebook, not run yet: answers stubbed, no outputs, no execution counts,
    the cells that will raise tagged ``raises-exception`` (a new notebook; ``solution`` is not changed)."""
    nb = copy.deepcopy(solution)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        cell.outputs, cell.execution_count = [], None
        tags = [t for t in cell.metadata.get("tags", []) if t != RAISES]
        if is_answer(cell):
            cell.source = strip_solutions(cell.source)
            if "raise NotImplementedError" in cell.source:
                tags.append(RAISES)
        elif is_check(cell):
            gid = check_id_of(cell)
            if gid not in CHECKS:
                raise ValueError(f"check cell {gid!r} has no entry in course_utils.grading.checks.CHECKS")
            tags.append(RAISES)
        if tags:
            cell.metadata["tags"] = tags
        else:
            cell.metadata.pop("tags", None)
    return nb


def solution_paths(folder: Path = SOLUTIONS) -> list[Path]:
    return sorted(Path(folder).glob(EXERCISE_GLOB))


def render(nb) -> str:
    return nbformat.writes(nb) + "\n"


def _canonical(text: str) -> str:
    """A notebook's sources and metadata, without outputs or counts: what the solutions decide."""
    nb = nbformat.reads(text, as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("widgets", None)
    return nbformat.writes(nb)


def build(solutions: Path = SOLUTIONS, dest: Path = EXERCISES, write: bool = True) -> list[Path]:
    """Regenerate every student copy; return the copies whose sources or metadata were (or, with
    ``write=False``, would be) changed.

    Writing runs each copy once in a fresh kernel, straight from the solution, and stores that run: its outputs
    are the ones a learner's first run gives (a given cell can print a once-per-process library warning that the
    solution printed earlier, in an answer the copy does not have). Strict nbval then compares against them.
    """
    changed = []
    for path in solution_paths(solutions):
        nb = student_copy(nbformat.read(path, as_version=4))
        target = Path(dest) / path.name
        if not target.is_file() or _canonical(target.read_text(encoding="utf-8")) != _canonical(render(nb)):
            changed.append(target)
        if write:
            execute_into(nb, target)
    return changed


def run_build(check_only: bool = False) -> int:
    """CLI entry: build (or with ``check_only`` only report stale copies); 1 when copies are stale in check mode."""
    start = time.perf_counter()
    try:
        changed = build(write=not check_only)
    except (ValueError, OSError, nbformat.ValidationError) as exc:
        print(f"exercises build failed: {type(exc).__name__}: {exc}")
        return 1
    took = time.perf_counter() - start
    n = len(solution_paths())
    if check_only:
        for p in changed:
            print(f"stale: {p.relative_to(EXERCISES.parent)} (run `python -m course_utils exercises build`)")
        print(f"{n} solution notebooks, {len(changed)} stale student copies ({took:.1f} s)")
        return 1 if changed else 0
    print(f"{n} solution notebooks -> {n} student copies written and executed, {len(changed)} with new cells "
          f"({took:.1f} s)")
    return 0


HANDOUT_README = """# Exercises

One notebook per lesson of the course. Open one in Jupyter (kernel "Python 3 (ipykernel)", named python3,
with `course_utils` installed), write each answer where a cell says `# YOUR CODE HERE` (replace the `None`s), run it, then run
the check cell under it: ✓ means the question is done, ✗ says what is still wrong. Files the exercises
save go to `saved/` next to the notebooks. Hand in the `.ipynb` files.
"""


def release(dest: Path, solutions: Path = SOLUTIONS) -> list[Path]:
    """Write the handout into ``dest``: the student copies without outputs and a README; never a solution.

    ``dest`` must not exist yet, or be empty: the handout is written to a staging folder and renamed into place.
    """
    dest = Path(dest)
    written = []
    with staged_folder(dest) as stage:
        for path in solution_paths(solutions):
            copy_nb = student_copy(nbformat.read(path, as_version=4))
            if any(BEGIN in c.source or END in c.source for c in copy_nb.cells):
                raise ValueError(f"{path.name}: a solution region survived the stubbing")
            (Path(stage) / path.name).write_text(render(copy_nb), encoding="utf-8")
            written.append(dest / path.name)
        (Path(stage) / "README.md").write_text(HANDOUT_README, encoding="utf-8")
    return written


def run_release(dest: str) -> int:
    """CLI entry: ``python -m course_utils exercises release DIR``."""
    try:
        written = release(Path(dest))
    except (ValueError, OSError, nbformat.ValidationError) as exc:
        print(f"exercises release failed: {one_line(exc)}")
        return 1
    print(f"{len(written)} exercise notebooks (no solutions, no outputs) and README.md written to {dest}")
    return 0
