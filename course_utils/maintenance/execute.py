"""Re-execute notebooks in place and store their outputs: ``make outputs``.

Each notebook runs in a fresh kernel from its own folder, with the environment the tests use
(offline, fixed hash seed), so the stored outputs are the ones strict nbval compares against.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from ..messages import one_line
from .notebook_env import ENV, KERNEL_NAME

# A live kernel names each widget model with a random uuid4, so every re-execution rewrote the ids in
# every widget output and in the notebook's widget state. For stored outputs the kernel draws them from
# a seeded generator instead: re-running an unchanged notebook leaves its file unchanged. Run silently
# before the first cell (no execution count, no output); it only touches the comm package's ids.
SEEDED_COMM_IDS = """
try:
    import random as _random, uuid as _uuid, comm.base_comm as _base_comm
    class _SeededIds:
        _rng, _UUID = _random.Random(0), _uuid.UUID
        @classmethod
        def uuid4(cls):
            return cls._UUID(int=cls._rng.getrandbits(128), version=4)
    _base_comm.uuid = _SeededIds
    del _random, _uuid, _base_comm, _SeededIds
except ImportError:
    pass
"""


def execute_notebook(path: str | Path, timeout: int = 300, kernel_name: str = KERNEL_NAME) -> float:
    """Run ``path`` top to bottom in a fresh kernel, save it with its outputs, return the seconds taken.

    Cells tagged ``raises-exception`` may raise; any other error stops and is reported.
    """
    return execute_into(nbformat.read(path, as_version=4), path, timeout, kernel_name)


def execute_into(nb, path: str | Path, timeout: int = 300, kernel_name: str = KERNEL_NAME) -> float:
    """Run the notebook ``nb`` in a fresh kernel from ``path``'s folder and write it, with its outputs, to ``path``
    (``exercises build`` hands it a student copy straight from the solution); return the seconds taken."""
    path = Path(path)
    os.environ.update(ENV)
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name, record_timing=False,
                            resources={"metadata": {"path": str(path.parent.resolve())}})

    async def seed_comm_ids(**_):
        reply = await client.async_wait_for_reply(client.kc.execute(SEEDED_COMM_IDS, silent=True, store_history=False))
        if reply is None or reply["content"]["status"] != "ok":
            raise RuntimeError(f"{path}: could not seed the widget ids in the kernel ({reply and reply['content']})")

    client.on_notebook_start = seed_comm_ids
    start = time.perf_counter()
    client.execute()
    took = time.perf_counter() - start
    for cell in nb.cells:
        cell.metadata.pop("execution", None)  # timestamps of some earlier run: noise in every diff
        if cell.cell_type == "code":
            cell.outputs = merge_streams(cell.outputs)
    if not _has_widget_output(nb):
        nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)
    return took


def merge_streams(outputs: list) -> list:
    """Join consecutive stdout (or stderr) chunks, so how the kernel happened to flush does not change the file."""
    merged: list = []
    for out in outputs:
        prev = merged[-1] if merged else None
        if (out.get("output_type") == "stream" and prev is not None and prev.get("output_type") == "stream"
                and prev.get("name") == out.get("name")):
            prev["text"] = prev["text"] + out["text"]
        else:
            merged.append(out)
    return merged


def _has_widget_output(nb) -> bool:
    return any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
               for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def execute_many(paths: list[str]) -> int:
    """Execute each notebook; print its time; return 1 if any failed."""
    failed = 0
    for p in paths:
        try:
            print(f"{p}: {execute_notebook(p):.1f} s", flush=True)
        except Exception as exc:  # report and go on with the rest
            failed += 1
            print(f"{p}: FAILED ({one_line(exc, 300, last=True)})", flush=True)
    return 1 if failed else 0
