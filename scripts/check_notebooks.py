#!/usr/bin/env python
"""``make check-notebooks``: validate every notebook with strict nbval, in parallel, against a time budget.

Each notebook's kernel has to import peft, so no run can beat the floor ``N x t / c`` (N notebooks,
t the median time of a bare ``python -c "import peft"`` measured here, c usable cores). This script
measures t, runs ``pytest --nbval`` on ``c`` xdist workers (one notebook per worker at a time: nbval
cells of one notebook share a kernel, so ``--dist loadfile`` is the only valid distribution), times
the whole run, prints each notebook's time and fails when ``wall / floor`` exceeds ``--max-ratio``.

Overheads it removes (measured on the course machine): jsonschema imports ``rfc3987_syntax``, which
builds a grammar at import time (about 1.5 s in the controller and in every worker), and the hypothesis
pytest plugin (about 1-2 s per process); neither is needed to check notebooks. And jupyter_client's fixed
waits around each kernel (0.2 s idle at every start, 0.1 s at every stop: ``QuickKernel`` below).

Scheduling: every notebook costs at least one peft import (about 4 s), so with 15 notebooks on 2 workers
xdist's first-come scheduling can leave one worker idle for most of a notebook at the end (measured: 3 s
of a 35 s run). The script plans the split instead: it estimates each notebook from the durations of
the last good run (``test-output/notebook_durations.json``, else the committed baseline
``scripts/notebook_durations.json``), splits the notebooks into ``c`` lists of nearly equal total time,
and this plugin's scheduler gives each worker its list, longest first. A worker that runs out of work
takes the shortest notebook still waiting, so a wrong estimate costs little. ``--update-baseline``
writes the measured durations to the committed baseline.

This file is also the pytest plugin it loads into the run (``-p check_notebooks``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GLOBS = ("notebooks/*.ipynb", "exercises/solutions/*.ipynb", "exercises/*.ipynb")
DURATIONS_ENV = "CHECK_NOTEBOOKS_DURATIONS"
PLAN_ENV = "CHECK_NOTEBOOKS_PLAN"
HISTORY = ROOT / "test-output" / "notebook_durations.json"
BASELINE = ROOT / "scripts" / "notebook_durations.json"
# Slow optional imports that checking a notebook does not need (see the module docstring).
SKIPPED_MODULES = ("rfc3987_syntax",)
SKIPPED_PLUGINS = ("hypothesispytest", "anyio", "platformdirs", "randomly")


# --------------------------------------------------------------------------- pytest plugin side
def pytest_plugin_registered(plugin, manager):
    """Runs as soon as this plugin is registered, before the entry-point plugins (nbval) import jsonschema."""
    for name in SKIPPED_MODULES:
        sys.modules.setdefault(name, None)  # `import name` now raises ImportError; jsonschema skips it


_records: dict[str, dict] = {}


def pytest_runtest_logreport(report):
    """Add every phase of every cell to its notebook's total (in the controller, reports come from workers)."""
    path = report.nodeid.split("::")[0]
    rec = _records.setdefault(path, {"seconds": 0.0, "setup": 0.0, "cells": 0, "failed": 0, "worker": "",
                                     "cell_seconds": {}})
    rec["seconds"] += report.duration
    if report.when == "setup":
        rec["setup"] += report.duration
    if report.when == "call":
        rec["cells"] += 1
        rec["cell_seconds"][report.nodeid.split("::", 1)[-1]] = report.duration
    if report.failed:
        rec["failed"] += 1
    node = getattr(report, "node", None)  # set by xdist in the controller
    if node is not None:
        rec["worker"] = node.gateway.id


def pytest_sessionfinish(session):
    for thread in _reapers:  # kernels stopped by QuickKernel.stop: wait until they are gone
        thread.join(timeout=30)
    out = os.environ.get(DURATIONS_ENV)
    if out and not hasattr(session.config, "workerinput"):  # only the controller writes
        Path(out).write_text(json.dumps(_records, indent=2, sort_keys=True) + "\n")


_reapers: list = []


def pytest_configure(config):
    """Every process that runs notebooks starts and stops kernels through ``QuickKernel``."""
    try:
        import nbval.kernel
        import nbval.plugin
    except ImportError:
        return
    if hasattr(nbval.kernel.RunningKernel, "_ensure_iopub_up") and hasattr(nbval.plugin, "RunningKernel"):
        nbval.plugin.RunningKernel = _quick_kernel_class(nbval.kernel)


def _quick_kernel_class(nbk):
    import threading
    from queue import Empty

    class QuickKernel(nbk.RunningKernel):
        """nbval's kernel without jupyter_client's fixed waits (measured: 0.2 s of each start, 0.1 s of each stop).

        Start: ``wait_for_ready`` ends by reading IOPub until 0.2 s pass with no message, and nbval then
        waits up to 1 s for IOPub to show a request's "idle" (missed, and 1 s lost, when the subscription is
        not up yet). Here the kernel is ready when it answers ``kernel_info`` on shell and its "idle" arrives
        on IOPub, asked again every 0.05 s until it does. Stop: the kernel is killed and reaped in a
        background thread while the next notebook starts.
        """

        def __init__(self, kernel_name, cwd=None, startup_timeout=60):
            self.km = nbk.KernelManager(kernel_name=kernel_name, kernel_spec_manager=nbk.NbvalKernelspecManager())
            self.km.start_kernel(stderr=open(os.devnull, "w"), cwd=cwd)
            self.kc = self.km.client()
            self.kc.start_channels()
            try:
                self._wait_for_shell(startup_timeout)
                self._wait_for_iopub(startup_timeout)
            except BaseException:
                self.stop()
                raise

        def _wait_for_shell(self, timeout: float) -> None:
            msg_id = self.kc.kernel_info()
            deadline = time.monotonic() + timeout
            while True:
                try:
                    if self.kc.get_shell_msg(timeout=1)["parent_header"].get("msg_id") == msg_id:
                        return
                except Empty:
                    if not self.km.is_alive():
                        raise RuntimeError("the kernel died while starting") from None
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the kernel did not answer within {timeout} s") from None

        def _wait_for_iopub(self, timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while True:
                msg_id = self.kc.kernel_info()
                self.await_reply(msg_id, timeout=timeout)
                try:
                    self.await_idle(msg_id, 0.05)
                    return
                except Empty:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"no IOPub messages from the kernel within {timeout} s") from None

        def stop(self):
            self.kc.stop_channels()
            km = self.km
            del self.km
            reaper = threading.Thread(target=km.shutdown_kernel, kwargs={"now": True}, name="kernel-reaper")
            reaper.start()
            _reapers.append(reaper)

    return QuickKernel


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """In the xdist controller: schedule by the plan the script passed in ``$CHECK_NOTEBOOKS_PLAN``, if any."""
    raw = os.environ.get(PLAN_ENV)
    if not raw or config.getvalue("dist") != "loadfile":
        return None
    return _planned_scheduling_class()(config, log, json.loads(raw))


def _planned_scheduling_class():
    from xdist.scheduler import LoadFileScheduling  # only the xdist controller gets here

    class PlannedScheduling(LoadFileScheduling):
        """``--dist loadfile`` with a fixed notebook list per worker (``gw0`` gets ``plan[0]``, and so on).

        A worker whose list is done takes a notebook nobody planned, else the last one queued (the
        queue is in command-line order, longest first, so that is the shortest left).
        """

        def __init__(self, config, log, plan: list[list[str]]):
            super().__init__(config, log)
            self._root = Path(config.rootpath)
            self._owner = {str(Path(p).resolve()): (i, k) for i, paths in enumerate(plan) for k, p in enumerate(paths)}

        def _where(self, scope: str):
            return self._owner.get(str((self._root / scope).resolve()))

        def pick(self, worker: str) -> str:
            index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else -1
            queued = list(self.workqueue)
            mine = sorted((self._where(s)[1], s) for s in queued if (self._where(s) or (None,))[0] == index)
            if mine:
                return mine[0][1]
            unplanned = [s for s in queued if self._where(s) is None]
            return unplanned[0] if unplanned else queued[-1]

        def _assign_work_unit(self, node) -> None:
            assert self.workqueue
            scope = self.pick(node.gateway.id)
            work_unit = self.workqueue.pop(scope)
            self.assigned_work.setdefault(node, {})[scope] = work_unit
            collection = self.registered_collections[node]
            node.send_runtest_some([collection.index(nodeid) for nodeid, done in work_unit.items() if not done])

    return PlannedScheduling


# --------------------------------------------------------------------------- the command
def find_notebooks(paths: list[str] | None, root: Path = ROOT) -> list[Path]:
    """The notebooks named (files or folders), or every course notebook that exists; checkpoints skipped."""
    found: list[Path] = []
    if paths:
        for p in map(Path, paths):
            p = p if p.is_absolute() else root / p
            if p.is_dir():
                found += sorted(p.glob("*.ipynb"))
            elif p.suffix == ".ipynb" and p.is_file():
                found.append(p)
            else:
                raise SystemExit(f"check_notebooks: {p} is not a notebook or a folder of notebooks: check the path.")
    else:
        for pattern in DEFAULT_GLOBS:
            found += sorted(root.glob(pattern))
    unique = dict.fromkeys(p.resolve() for p in found if ".ipynb_checkpoints" not in p.parts)
    return list(unique)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def time_bare_import(module: str = "peft", runs: int = 3, python: str = sys.executable) -> tuple[float, list[float]]:
    """Median wall seconds of ``python -c "import MODULE"`` in a fresh process, and every run's time."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([python, "-c", f"import {module}"], check=True, env=_env())
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def load_durations(*files: Path) -> dict[str, float]:
    """``{notebook path relative to the repository: seconds}`` from the first of ``files`` that reads."""
    for f in files:
        try:
            data = json.loads(Path(f).read_text())
            return {k: float(v.get("estimate", v["seconds"]) if isinstance(v, dict) else v) for k, v in data.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return {}


def estimates_for(notebooks: list[Path], durations: dict[str, float]) -> dict[Path, float]:
    """Seconds expected for each notebook: its last duration, else the median of the known ones (else 1)."""
    known = {p: durations[_rel(p)] for p in notebooks if _rel(p) in durations}
    default = statistics.median(known.values()) if known else 1.0
    return {p: known.get(p, default) for p in notebooks}


def plan_workers(estimates: dict[Path, float], workers: int) -> list[list[Path]]:
    """Split the notebooks into ``workers`` lists whose estimated totals are as equal as possible.

    Longest-processing-time first, then moves and swaps out of the fullest list while they lower it.
    Each list comes back longest first; empty lists are dropped.
    """
    if workers < 1:
        raise ValueError(f"need at least one worker, got {workers}")
    bins: list[list[Path]] = [[] for _ in range(workers)]
    loads = [0.0] * workers
    for p in sorted(estimates, key=lambda q: (-estimates[q], str(q))):
        i = loads.index(min(loads))
        bins[i].append(p)
        loads[i] += estimates[p]
    for _ in range(10_000):
        hi = loads.index(max(loads))
        best = None  # (new max of the pair, item out of hi, item out of lo or None, lo)
        for lo in range(workers):
            if lo == hi:
                continue
            for a in bins[hi]:
                for b in [None] + bins[lo]:
                    d = estimates[a] - (estimates[b] if b is not None else 0.0)
                    pair_max = max(loads[hi] - d, loads[lo] + d)
                    if d > 0 and pair_max < loads[hi] - 1e-9 and (best is None or pair_max < best[0]):
                        best = (pair_max, a, b, lo)
        if best is None:
            break
        _, a, b, lo = best
        bins[hi].remove(a)
        bins[lo].append(a)
        loads[hi] -= estimates[a]
        loads[lo] += estimates[a]
        if b is not None:
            bins[lo].remove(b)
            bins[hi].append(b)
            loads[lo] -= estimates[b]
            loads[hi] += estimates[b]
    return [sorted(b, key=lambda q: (-estimates[q], str(q))) for b in bins if b]


def verdict(n: int, t: float, cores: int, wall: float, max_ratio: float) -> tuple[float, float, bool]:
    """``(floor, ratio, ok)`` for N notebooks each paying an import of t seconds on ``cores`` cores."""
    if n < 1 or t <= 0 or cores < 1:
        raise ValueError(f"need at least one notebook, a positive import time and a core (got {n}, {t}, {cores})")
    floor = n * t / cores
    ratio = wall / floor
    return floor, ratio, ratio <= max_ratio


def _env() -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "0"}
    # One worker per core: a kernel that also spreads torch over every core only makes the kernels fight
    # (measured: ratio 1.59 with torch's default threads, 1.23 with one thread each; outputs identical).
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent), env.get("PYTHONPATH")]))
    return env


def build_pytest_command(notebooks: list[Path], workers: int, python: str = sys.executable) -> list[str]:
    cmd = [python, "-m", "pytest", "-p", "no:cacheprovider", "-p", "check_notebooks"]
    for plugin in SKIPPED_PLUGINS:
        cmd += ["-p", f"no:{plugin}"]
    cmd += ["--nbval", "--nbval-sanitize-with", str(ROOT / "tests" / "nbval_sanitize.cfg"), "-q",
            "-o", "addopts=",
            # Node ids are paths relative to the rootdir; a notebook outside it would get an empty one.
            "--rootdir", os.path.commonpath([str(ROOT)] + [str(p) for p in notebooks])]
    if workers > 1:
        cmd += ["-n", str(workers), "--dist", "loadfile", "--no-loadscope-reorder"]
    return cmd + [str(p) for p in notebooks]


def _rel(p: str | Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", help="notebooks or folders (default: every course notebook)")
    parser.add_argument("--max-ratio", type=float, default=float(os.environ.get("MAX_RATIO", 1.25)),
                        help="fail when wall time / floor is above this (default 1.25, or $MAX_RATIO)")
    parser.add_argument("--workers", type=int, default=0, help="xdist workers (default: the usable cores)")
    parser.add_argument("--import-runs", type=int, default=4,
                        help="bare imports to time, half before and half after the run (median; default 4)")
    parser.add_argument("--history", default=str(HISTORY), help="where the last run's durations are kept")
    parser.add_argument("--update-baseline", action="store_true",
                        help=f"also write this run's durations to {_rel(BASELINE)} (the estimates of a fresh clone)")
    args = parser.parse_args(argv)

    notebooks = find_notebooks(args.paths)
    if not notebooks:
        print("check_notebooks: no notebooks found (looked for " + ", ".join(DEFAULT_GLOBS) + "): nothing to check")
        return 0
    cores = usable_cores()
    workers = args.workers or cores
    history_file = Path(args.history)
    durations = load_durations(history_file, BASELINE)
    estimates = estimates_for(notebooks, durations)
    notebooks = sorted(notebooks, key=lambda p: (-estimates[p], str(p)))  # the queue: longest first
    plan = plan_workers(estimates, workers) if workers > 1 else [notebooks]
    source = ("the last run" if load_durations(history_file) else "the committed baseline") if durations else "no timings"
    for i, paths in enumerate(plan):
        print(f"check_notebooks: worker gw{i}: {len(paths)} notebooks, about {sum(estimates[p] for p in paths):.1f} s "
              f"(estimated from {source})")

    # Time the bare imports on both sides of the run, so that t sees the same machine load as the run.
    before = max(1, (args.import_runs + 1) // 2)
    runs = time_bare_import(runs=before)[1]
    print(f"check_notebooks: bare `import peft` took {', '.join(f'{r:.2f}' for r in runs)} s", flush=True)
    durations_file = history_file.with_suffix(".new.json")
    durations_file.parent.mkdir(parents=True, exist_ok=True)
    env = {**_env(), DURATIONS_ENV: str(durations_file), PLAN_ENV: json.dumps([[str(p) for p in b] for b in plan])}
    start = time.perf_counter()
    rc = subprocess.run(build_pytest_command(notebooks, workers), cwd=ROOT, env=env).returncode
    wall = time.perf_counter() - start
    if args.import_runs > before:
        runs += time_bare_import(runs=args.import_runs - before)[1]
    t = statistics.median(runs)
    print(f"check_notebooks: bare `import peft` took {', '.join(f'{r:.2f}' for r in runs)} s "
          f"({before} before the run, {len(runs) - before} after) -> t = median = {t:.2f} s")

    try:
        records = json.loads(durations_file.read_text())
    except (OSError, ValueError):
        records = {}
    records = {_rel(ROOT / k if not Path(k).is_absolute() else k): v for k, v in records.items()}
    for name, r in records.items():  # the next plan's estimate: this run averaged with the last estimate
        r["estimate"] = round((r["seconds"] + durations[name]) / 2 if name in durations else r["seconds"], 3)
    if records:
        print(f"\n{'notebook':<52} {'seconds':>8} {'kernel':>7} {'minus t':>8} {'cells':>6} worker")
        for name, r in sorted(records.items(), key=lambda kv: -kv[1]["seconds"]):
            print(f"{name:<52} {r['seconds']:8.1f} {r['setup']:7.1f} {r['seconds'] - t:8.1f} {r['cells']:6d} "
                  f"{r['worker']}{'  FAILED' if r['failed'] else ''}")
        cells = sorted(((secs, f"{name}::{cell}") for name, r in records.items()
                        for cell, secs in r.get("cell_seconds", {}).items()), reverse=True)
        print("slowest cells (the first cell of a notebook includes its `import peft`): " + ", ".join(
            f"{cell} {secs:.1f} s" for secs, cell in cells[:10]))
        busy = sum(r["seconds"] for r in records.values())
        print(f"sum of notebook times {busy:.1f} s on {workers} workers; 'kernel' is the kernel start (nbval setup), "
              f"'minus t' the time beyond a bare peft import")
        if rc == 0:
            history_file.write_text(json.dumps(records, indent=2, sort_keys=True) + "\n")
            if args.update_baseline:
                BASELINE.write_text(json.dumps({k: round(r["estimate"], 2) for k, r in records.items()},
                                               indent=1, sort_keys=True) + "\n")
                print(f"check_notebooks: wrote the durations to {_rel(BASELINE)}")
    durations_file.unlink(missing_ok=True)

    floor, ratio, ok = verdict(len(notebooks), t, cores, wall, args.max_ratio)
    print(f"\ncheck_notebooks: N = {len(notebooks)} notebooks, t = {t:.2f} s, c = {cores} cores, "
          f"floor N*t/c = {floor:.1f} s, wall = {wall:.1f} s, ratio = {ratio:.2f} (limit {args.max_ratio})")
    if rc != 0:
        print(f"check_notebooks: FAILED: nbval reported problems (pytest exit code {rc}); see above.")
        return rc
    if not ok:
        print(f"check_notebooks: FAILED: the notebooks took {ratio:.2f} x the floor (limit {args.max_ratio}): "
              "shorten the slowest notebooks listed above.")
        return 1
    print("check_notebooks: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
