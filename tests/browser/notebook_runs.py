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
# Started together the first time any of them is needed (those that exist).
BATCH = ["exercises/01_save_adapter.ipynb"] + [
    f"notebooks/{name}.ipynb" for name in ("01_save_adapter", "02_reload_adapter", "03_gotchas_and_errors",
                                           "04_devices_and_dtypes", "05_multi_adapter_switching",
                                           "06_training_checkpoints_and_new_tokens",
                                           "07_versions_sharing_and_combining")]
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
