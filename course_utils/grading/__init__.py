"""Instructor tooling: grading exercise submissions (see ``grader.py``)."""
from __future__ import annotations

import re

# Set in a graded kernel: check cells then only write their evidence under this folder (``checks.check``).
EVIDENCE_ENV = "COURSE_EVIDENCE"

# Exercise notebooks are named Exercise_NN_topic.ipynb, so that JupyterLab's tabs read "Exercise NN ...".
EXERCISE_GLOB = "Exercise_[0-9][0-9]_*.ipynb"
_NUMBER = re.compile(r"(?:exercise[ _-]?|ex)?([0-9]{2})(?:[_ -]|$)", re.IGNORECASE)


def exercise_number(name: str) -> str | None:
    """The two-digit exercise number a notebook's or folder's name starts with: ``Exercise_06_new_tokens``, the
    older ``06_training_checkpoints_and_new_tokens``, or an nbgrader assignment folder ``ex06``; else None."""
    found = _NUMBER.match(name)
    return found.group(1) if found else None
