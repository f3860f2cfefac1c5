"""The exercises' check cells: ``check("ex02_q1", reloaded=reloaded, ...)`` after each answer.

``check`` first writes the answers as evidence (``evidence.py``: plain data, copied folders, models as their
tensors). In a notebook it then judges that evidence at once with the grader's own code (``check.py``) and shows
one ✓ line, or raises ``CheckFailed`` with one ✗ line saying what is wrong without giving the answer away. This is
a self-check: the grader runs the same judge on the same evidence, outside the learner's kernel, and its verdict
is the one that counts. Under the grader (``$COURSE_EVIDENCE`` set) ``check`` only writes the evidence.

The first cell's ``learner()`` is re-exported here. Each exercise's given material (its per-learner data) and
its questions' judges live in ``questions/exNN.py``, whose docstrings name the lesson; the notebooks import the
given material from there.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..learner import learner
from . import EVIDENCE_ENV, evidence
from .check import none_message, verdict
from .questions import QUESTIONS

CHECKS = QUESTIONS   # id -> Question (points, answers, judge)
SELF_CHECK = "self-check; the grader's verdict counts"

__all__ = ["CHECKS", "CheckFailed", "check", "learner", "stub_message"]


class CheckFailed(AssertionError):
    """A check that did not pass. Shown in a notebook as its one ✗ line, without a traceback."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a traceback
        return [str(self)]


def stub_message(check_id: str) -> str:
    """The ✗ line ``check`` raises while the answers of ``check_id`` are still the stub's None."""
    return f"✗ {check_id}: {none_message(QUESTIONS[check_id].answers[0])}"


def _write(check_id: str, folder: Path, answers: dict) -> None:
    question = QUESTIONS[check_id]
    probes = question.probe(answers) if question.probe is not None else None
    evidence.write(check_id, folder, answers, probes, question.paths)


def check(check_id: str, **answers) -> None:
    """Write the evidence of ``check_id``'s answers; in a notebook, judge it: one ✓ line or ``CheckFailed``."""
    folder = evidence.evidence_root() / check_id
    if check_id in QUESTIONS:
        _write(check_id, folder, answers)
    if os.environ.get(EVIDENCE_ENV):
        print(f"evidence for {check_id} saved: the grader judges it after the notebook has run.")
        return
    result = verdict(folder, check_id)
    if not result.passed:
        raise CheckFailed(result.line)
    print(f"{result.line[:-1]}; {SELF_CHECK})")
