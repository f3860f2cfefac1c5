"""The course repository around the installed package, for the tools that work on its files.

Lessons never need it; ``make outputs``, ``make bench`` and ``exercises build`` do, and they say so in one
line when run from an installed wheel with no checkout around it.
"""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXERCISES = REPO / "exercises"
SOLUTIONS = EXERCISES / "solutions"


def require_checkout(path: Path, what: str) -> Path:
    """``path`` if it exists, else a one-line error saying that ``what`` needs the course's git checkout."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: {what} works on the course's files; run it from a "
                                "git checkout of the course (installed with `pip install -e .`).")
    return path
