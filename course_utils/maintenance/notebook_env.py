"""The one environment and kernel every notebook runner uses: ``make outputs``, the grader, ``make check-notebooks``.

Offline, a fixed hash seed and one torch thread per kernel, so stored outputs, grades and nbval runs agree.
"""
from __future__ import annotations

import os

ENV = {"HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1",
       "COURSE_LEARNER": "ci"}  # stored outputs show the data of one fixed learner, "ci"
KERNEL_NAME = "python3"


def notebook_environ(base: dict | None = None) -> dict:
    """``base`` (default ``os.environ``) with the course's notebook settings on top."""
    return {**(os.environ if base is None else base), **ENV}
