#!/usr/bin/env python
"""``make check-notebooks``: validate every notebook with strict nbval, in parallel, against a time budget.

Each notebook's kernel has to import peft, so no run can beat the floor ``N x t / c`` (N notebooks,
t the median time of a bare ``python -c "import peft"`` measured here, c usable cores). This script
measures t, runs ``pytest --nbval`` on ``c`` xdist workers (one notebook per worker at a time: nbval
cells of one notebook share a kernel, so ``--dist loadfile`` is the only valid distribution), times
the whole run, prints each notebook's time and fails when ``wall / floor`` exceeds ``--max-ratio``.

Overheads it removes (measured on the course machine): jsonschema imports ``rfc3987_syntax``, which
builds a grammar at import time (about 1.5 s in the controller and in every worker), and the hypothesis
pytest plugin (about 1-2 s per process); neither is needed to check notebooks. Notebooks are handed
to the workers longest first, by the durations of the previous run (``test-output/``).

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

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GLOBS = ("notebooks/*.ipynb", "exercises/solutions/*.ipynb", "exercises/*.ipynb")
DURATIONS_ENV = "CHECK_NOTEBOOKS_DURATIONS"
HISTORY = ROOT / "test-output" / "notebook_durations.json"
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
    out = os.environ.get(DURATIONS_ENV)
    if out and not hasattr(session.config, "workerinput"):  # only the controller writes
        Path(out).write_text(json.dumps(_records, indent=2, sort_keys=True) + "\n")


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


def longest_first(notebooks: list[Path], history: dict[str, float]) -> list[Path]:
    """Order for the scheduler: longest previous duration first; notebooks never timed go first, by size."""
    def key(p: Path):
        known = history.get(str(p))
        return (0, -p.stat().st_size) if known is None else (1, -known)
    return sorted(notebooks, key=key)


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
    parser.add_argument("--import-runs", type=int, default=3, help="bare imports to time (median; default 3)")
    parser.add_argument("--history", default=str(HISTORY), help="where the last run's durations are kept")
    args = parser.parse_args(argv)

    notebooks = find_notebooks(args.paths)
    if not notebooks:
        print("check_notebooks: no notebooks found (looked for " + ", ".join(DEFAULT_GLOBS) + "): nothing to check")
        return 0
    cores = usable_cores()
    workers = args.workers or cores
    history_file = Path(args.history)
    try:
        history = {k: v["seconds"] for k, v in json.loads(history_file.read_text()).items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        history = {}
    notebooks = longest_first(notebooks, {str(ROOT / k): v for k, v in history.items()})

    # Time the bare imports on both sides of the run, so that t sees the same machine load as the run.
    before = max(1, (args.import_runs + 1) // 2)
    runs = time_bare_import(runs=before)[1]
    print(f"check_notebooks: bare `import peft` took {', '.join(f'{r:.2f}' for r in runs)} s", flush=True)
    durations_file = history_file.with_suffix(".new.json")
    durations_file.parent.mkdir(parents=True, exist_ok=True)
    env = {**_env(), DURATIONS_ENV: str(durations_file)}
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
