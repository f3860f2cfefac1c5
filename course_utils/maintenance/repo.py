"""The course repository around the installed package, for the tools that work on its files.

Lessons never need it; ``make outputs``, ``make bench`` and ``exercises build`` do.
"""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXERCISES = REPO / "exercises"
SOLUTIONS = EXERCISES / "solutions"
