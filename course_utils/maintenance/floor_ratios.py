"""How close the course's slow commands come to their floor: ``make bench`` runs this after the benchmark.

Every notebook kernel (and every graded submission) must import peft, so no run can beat the floor
``N x t / c``: N notebooks, t the median time of a bare ``python -c "import peft"``, c usable cores. This
measures t (before and after, median of all runs), times each command exactly as a user runs it
(``make check-notebooks``; ``python -m course_utils grade`` on a class-size batch), and reports
``wall / floor``. Writes ``benchmarks/floor_ratios.md`` and ``.json``.
Reported, never asserted by a test: a test never asserts a wall-clock time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .bench_grading import class_batch, grade_command
from .notebook_env import notebook_environ
from .repo import REPO

OUT = REPO / "benchmarks"
NOTEBOOK_GLOBS = ("notebooks/*.ipynb", "exercises/solutions/*.ipynb", "exercises/*.ipynb")


@dataclass(frozen=True)
class FloorRatio:
    """One command against its floor ``units x t / cores``."""

    command: str
    units: int
    t_import_s: float
    cores: int
    wall_s: float

    @property
    def floor_s(self) -> float:
        return self.units * self.t_import_s / self.cores

    @property
    def ratio(self) -> float:
        return self.wall_s / self.floor_s

    def as_dict(self) -> dict:
        return {**asdict(self), "floor_s": round(self.floor_s, 2), "ratio": round(self.ratio, 3)}


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def bare_import_times(runs: int = 2, python: str = sys.executable, module: str = "peft") -> list[float]:
    """Wall seconds of ``runs`` fresh ``python -c "import peft"`` processes, one after the other."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([python, "-c", f"import {module}"], check=True, env=notebook_environ())
        times.append(time.perf_counter() - start)
    return times


def time_command(argv: list[str], cwd: Path = REPO) -> float:
    """Wall seconds of one run of ``argv``; a failing command is an error, not a time."""
    start = time.perf_counter()
    run = subprocess.run(argv, cwd=cwd, env=notebook_environ(), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if run.returncode != 0:
        tail = "\n".join((run.stdout + run.stderr).strip().splitlines()[-5:])
        raise RuntimeError(f"{' '.join(argv)} failed (exit {run.returncode}); its last lines:\n{tail}")
    return wall


def measure(command: list[str], units: int, label: str, import_runs: int = 4) -> FloorRatio:
    """Time ``command`` between two halves of the bare-import runs; t is the median of all of them."""
    before = bare_import_times(max(1, import_runs // 2))
    wall = time_command(command)
    after = bare_import_times(max(1, import_runs - len(before)))
    return FloorRatio(label, units, round(statistics.median(before + after), 3), usable_cores(), round(wall, 2))


def count_notebooks(root: Path = REPO) -> int:
    return sum(len(list(root.glob(g))) for g in NOTEBOOK_GLOBS)


def write(results: list[FloorRatio], out: Path = OUT) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "floor_ratios.json").write_text(json.dumps([r.as_dict() for r in results], indent=1) + "\n")
    lines = ["# Slow commands against their floor (`make bench`)", "",
             "Floor = N x t / c: N units (notebooks or submissions), each of which imports peft in its own kernel; "
             "t = median wall time of a bare `python -c \"import peft\"`; c = usable cores.", "",
             "| command | N | t (s) | c | floor (s) | wall (s) | wall / floor |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| `{r.command}` | {r.units} | {r.t_import_s:.2f} | {r.cores} | {r.floor_s:.1f} | "
                     f"{r.wall_s:.1f} | {r.ratio:.2f} |")
    md = out / "floor_ratios.md"
    md.write_text("\n".join(lines) + "\n")
    return md


def grading_ratio(students: int, jobs: int | None = None) -> FloorRatio:
    """Grade ``students`` submissions of every exercise (``bench_grading.class_batch``) against M·t/c."""
    jobs = jobs or usable_cores()
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        m = class_batch(Path(tmp), students)
        return measure(grade_command(Path(tmp), jobs), m, f"course_utils grade ({m} submissions) --jobs {jobs}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils.maintenance.floor_ratios",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(OUT), help="folder for floor_ratios.md and .json")
    parser.add_argument("--students", type=int, default=8,
                        help="copies of each solution in the grading batch (default 8: 56 submissions; 0 skips)")
    args = parser.parse_args(argv)
    results = [measure(["make", "--no-print-directory", "check-notebooks"], count_notebooks(),
                       "make check-notebooks")]
    if args.students > 0:
        results.append(grading_ratio(args.students))
    md = write(results, Path(args.out))
    print(md.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
