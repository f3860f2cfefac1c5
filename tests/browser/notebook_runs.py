"""Run each notebook once per session in the shared page; later tests of it reuse that run.

The course's notebooks are started together (each in its own JupyterLab tab and kernel, Run All clicked
in turn), so their kernels share the CPU instead of waiting for one another; each test then waits for
its own notebook to finish.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from lab_page import Lab, NotebookRun

REPO = Path(__file__).resolve().parents[2]


def _first(pattern: str) -> str | None:
    hits = sorted(REPO.glob(pattern))
    return hits[0].relative_to(REPO).as_posix() if hits else None


def lesson(number: int) -> str:
    """The lesson ``notebooks/NN_*.ipynb`` (a path that does not exist, so its tests skip, if none)."""
    return _first(f"notebooks/{number:02d}_*.ipynb") or f"notebooks/{number:02d}_missing.ipynb"


def exercise(number: int) -> str:
    """The student copy ``exercises/Exercise_NN_*.ipynb`` (before the rename: ``exercises/NN_*.ipynb``)."""
    return (_first(f"exercises/Exercise_{number:02d}_*.ipynb") or _first(f"exercises/{number:02d}_*.ipynb")
            or f"exercises/Exercise_{number:02d}_missing.ipynb")


# Every lesson, found by its number, not its name (lessons are split and renamed).
LESSONS = sorted(p.relative_to(REPO).as_posix() for p in REPO.glob("notebooks/[0-9][0-9]_*.ipynb"))
# Started together the first time any of them is needed.
BATCH = [exercise(1)] + LESSONS
_runs: dict[str, NotebookRun | Exception] = {}
_current: list[str] = []


def ran(lab: Lab, rel_path: str, repo: Path = REPO) -> NotebookRun:
    """The notebook ``rel_path`` (from the temporary copy), run with Run All in JupyterLab.

    A notebook missing from the repository is skipped (its lesson is not written yet). A failed run is
    remembered, so the notebook's other tests fail with the same message instead of running it again.
    """
    if not (repo / rel_path).exists():
        pytest.skip(f"{rel_path} does not exist yet")
    if rel_path not in _runs:
        if rel_path not in lab.started:
            batch = [p for p in BATCH if (REPO / p).exists()] if rel_path in BATCH else [rel_path]
            for path in batch:
                if path not in lab.started:
                    try:
                        lab.start(path)
                    except Exception as exc:  # noqa: BLE001 - re-raised for every test of this notebook
                        _runs[path] = exc
        if rel_path not in _runs:
            try:
                _runs[rel_path] = lab.finish(rel_path)
            except Exception as exc:  # noqa: BLE001
                _runs[rel_path] = exc
    if _current and _current[0] != rel_path:
        lab.close(_current.pop())  # the previous notebook's tests are done: end its kernel
    if not _current:
        _current.append(rel_path)
    outcome = _runs[rel_path]
    if isinstance(outcome, Exception):
        raise AssertionError(f"running {rel_path} in JupyterLab failed: {outcome}")
    lab.activate(rel_path)
    return outcome
