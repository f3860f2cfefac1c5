"""Grading throughput against its floor: ``grading_throughput()`` grades a class-size batch and compares the
wall time with M·t/c (M submissions, t a bare ``python -c "import peft"``, c cores), the time a grader needs
at the least when every submission's kernel must import peft. For ``make bench``:
``python -m course_utils.maintenance.bench_grading [--students N]``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..grading.grader import default_jobs
from .notebook_env import notebook_environ
from .repo import EXERCISES, SOLUTIONS


def import_floor_seconds(repeats: int = 3) -> float:
    """t: the median wall time of a bare ``python -c "import peft"``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import peft"], check=True, env=notebook_environ())
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def class_batch(folder: Path, students: int) -> int:
    """Write ``students`` submissions per exercise, alternately the solution and the student copy."""
    count = 0
    for solution in sorted(SOLUTIONS.glob("[0-9]*.ipynb")):
        for s in range(students):
            shutil.copyfile(solution if s % 2 == 0 else EXERCISES / solution.name, folder / f"{solution.stem}_s{s:03d}.ipynb")
            count += 1
    return count


def grading_throughput(students: int = 2, jobs: int | None = None) -> dict:
    """Grade ``students`` submissions of every exercise with ``--jobs`` and report the ratio to M·t/c."""
    cores = jobs or default_jobs()
    floor_t = import_floor_seconds()
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        m = class_batch(Path(tmp), students)
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "course_utils", "grade", tmp, "--json", "--jobs", str(cores)],
                             check=False, capture_output=True, text=True, env=notebook_environ())
        wall = time.perf_counter() - start
    graded = len(run.stdout.splitlines())
    floor = m * floor_t / cores
    return {"submissions": m, "graded": graded, "cores": cores, "import_peft_s": round(floor_t, 2),
            "floor_s": round(floor, 1), "wall_s": round(wall, 1), "ratio": round(wall / floor, 2),
            "per_submission_s": round(wall / m, 2), "exit_code": run.returncode}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--students", type=int, default=2, help="submissions per exercise (a class: 60)")
    parser.add_argument("--jobs", type=int, help="kernels side by side (default: the cores available)")
    parser.add_argument("--max-ratio", type=float, default=float("inf"), help="exit 1 above this ratio")
    args = parser.parse_args(argv)
    report = grading_throughput(args.students, args.jobs)
    print(json.dumps(report))
    return 0 if report["ratio"] <= args.max_ratio and report["graded"] == report["submissions"] else 1


if __name__ == "__main__":
    sys.exit(main())
