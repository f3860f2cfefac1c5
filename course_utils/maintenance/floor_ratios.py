"""How close the course's slow commands come to their floor: ``make bench`` runs this after the benchmark.

Every notebook kernel (and every graded submission) must import peft, so no run can beat the floor
``N x t / c``: N notebooks, t the median time of a bare ``python -c "import peft"``, c usable cores. Each
command is run as a user runs it (``make check-notebooks``; ``python -m course_utils grade`` on a class-size
batch) five times, each run paired with a bare import just before and after it, and the report gives the median
``wall / floor`` of the pairs with their spread, and what share of the floor torch, transformers and
bitsandbytes take. Writes ``benchmarks/floor_ratios.md`` and ``.json``.
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
    """One command against its floor ``units x t / cores``, measured ``len(pairs)`` times. Each pair is (t, wall):
    the bare-import time measured right next to that run of the command (the mean of one import just before and
    one just after it) and the command's wall time; each pair gives its own ratio, so a machine that slows down
    for a while slows both halves of a pair."""

    command: str
    units: int
    cores: int
    pairs: tuple[tuple[float, float], ...]

    def ratios(self) -> list[float]:
        return [wall / (self.units * t / self.cores) for t, wall in self.pairs]

    @property
    def ratio(self) -> float:
        """The median of the paired ratios."""
        return statistics.median(self.ratios())

    @property
    def spread(self) -> tuple[float, float]:
        return min(self.ratios()), max(self.ratios())

    @property
    def t_import_s(self) -> float:
        return statistics.median(t for t, _ in self.pairs)

    @property
    def wall_s(self) -> float:
        return statistics.median(w for _, w in self.pairs)

    @property
    def floor_s(self) -> float:
        return self.units * self.t_import_s / self.cores

    def as_dict(self) -> dict:
        return {**asdict(self), "t_import_s": round(self.t_import_s, 3), "wall_s": round(self.wall_s, 2),
                "floor_s": round(self.floor_s, 2), "ratio": round(self.ratio, 3),
                "spread": [round(x, 3) for x in self.spread]}


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def bare_import_times(runs: int = 2, python: str = sys.executable, module: str = "peft") -> list[float]:
    """Wall seconds of ``runs`` fresh ``python -c "import peft"`` processes, one after the other."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        # output captured: on CPUs with AVX512-BF16 bitsandbytes logs a missing optional kernel at every import
        # (lesson 11 explains it); here it would only repeat once per measurement
        subprocess.run([python, "-c", f"import {module}"], check=True, env=notebook_environ(), capture_output=True)
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


def measure(command: list[str], units: int, label: str, repeats: int = 5) -> FloorRatio:
    """``repeats`` paired runs: a bare import, the command, a bare import; t for that run is the mean of the two."""
    pairs = []
    for _ in range(repeats):
        before = bare_import_times(1)[0]
        wall = time_command(command)
        after = bare_import_times(1)[0]
        pairs.append((round((before + after) / 2, 3), round(wall, 2)))
    return FloorRatio(label, units, usable_cores(), tuple(pairs))


def import_shares(runs: int = 5) -> dict[str, float]:
    """Median wall seconds of a bare ``import X`` for torch, transformers and peft (each imports the one before),
    and of bitsandbytes, which peft imports when it is installed: what share of the floor is whose."""
    return {module: round(statistics.median(bare_import_times(runs, module=module)), 3)
            for module in ("torch", "transformers", "bitsandbytes", "peft")}


def count_notebooks(root: Path = REPO) -> int:
    return sum(len(list(root.glob(g))) for g in NOTEBOOK_GLOBS)


def write(results: list[FloorRatio], out: Path = OUT, shares: dict[str, float] | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "floor_ratios.json").write_text(json.dumps({"commands": [r.as_dict() for r in results],
                                                       "imports_s": shares or {}}, indent=1) + "\n")
    lines = ["# Slow commands against their floor (`make bench`)", "",
             "Floor = N x t / c: N units (notebooks or submissions), each of which imports peft in its own kernel; "
             "t = wall time of a bare `python -c \"import peft\"`, measured next to each run; c = usable cores. "
             "Each run gives one ratio; the table shows the median and the spread (lowest-highest).", "",
             "| command | N | runs | t (s) | c | floor (s) | wall (s) | wall / floor (median) | spread |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        low, high = r.spread
        lines.append(f"| `{r.command}` | {r.units} | {len(r.pairs)} | {r.t_import_s:.2f} | {r.cores} | "
                     f"{r.floor_s:.1f} | {r.wall_s:.1f} | {r.ratio:.2f} | {low:.2f}-{high:.2f} |")
    if shares:
        peft = shares["peft"]
        lines += ["", "What the floor is made of: the median of bare imports, each in a fresh process. bitsandbytes "
                  "and peft import torch; `import transformers` alone is lazy (peft then loads its modeling code); "
                  "peft imports bitsandbytes whenever it is installed (`peft/helpers.py`), so every kernel pays for "
                  "it, not only the QLoRA lesson's:", "",
                  "| import | s | share of `import peft` |", "|---|---:|---:|"]
        lines += [f"| `{m}` | {t:.2f} | {t / peft:.0%} |" for m, t in shares.items()]
    md = out / "floor_ratios.md"
    md.write_text("\n".join(lines) + "\n")
    return md


def grading_ratio(students: int, jobs: int | None = None, repeats: int = 5) -> FloorRatio:
    """Grade ``students`` submissions of every exercise (``bench_grading.class_batch``) against M·t/c."""
    jobs = jobs or usable_cores()
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        m = class_batch(Path(tmp), students)
        return measure(grade_command(Path(tmp), jobs), m, f"course_utils grade ({m} submissions) --jobs {jobs}",
                       repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils.maintenance.floor_ratios",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(OUT), help="folder for floor_ratios.md and .json")
    parser.add_argument("--students", type=int, default=4,
                        help="copies of each solution in the grading batch (default 4; 0 skips)")
    parser.add_argument("--repeats", type=int, default=5, help="paired runs of each command (default 5)")
    args = parser.parse_args(argv)
    results = [measure(["make", "--no-print-directory", "check-notebooks"], count_notebooks(),
                       "make check-notebooks", args.repeats)]
    if args.students > 0:
        results.append(grading_ratio(args.students, repeats=args.repeats))
    md = write(results, Path(args.out), import_shares())
    print(md.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
