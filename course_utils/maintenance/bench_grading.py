"""A class-size grading batch for ``make bench`` (``floor_ratios`` times it against M·t/c).

``class_batch`` writes ``students`` copies of every exercise's solution: every submission does a whole exercise's
work and has every question judged, the worst case of a class that answered everything.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from ..grading import EXERCISE_GLOB
from .repo import SOLUTIONS


def class_batch(folder: Path, students: int) -> int:
    """Write ``students`` copies of each solution into ``folder``; return how many were written."""
    count = 0
    for solution in sorted(SOLUTIONS.glob(EXERCISE_GLOB)):
        for s in range(students):
            shutil.copyfile(solution, Path(folder) / f"{solution.stem}_s{s:03d}.ipynb")
            count += 1
    return count


def grade_command(folder: Path, jobs: int) -> list[str]:
    """The grader exactly as an instructor runs it on ``folder``, with ``jobs`` kernels side by side."""
    return [sys.executable, "-m", "course_utils", "grade", str(folder), "--json", "--jobs", str(jobs)]
