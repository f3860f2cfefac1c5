"""The verdict on one question, computed from its evidence by trusted code: ``verdict(folder, check_id)``.

The grader calls it in its own worker process after the submission's sandboxed kernel has ended (one warm
checker per worker: the libraries and the reference models are loaded once); the in-notebook self-check calls
the same function on the same evidence, so both always agree. Nothing here imports or runs what the learner
wrote: answers are read as data (``evidence.py``) and judged by ``questions/``. ``python -m
course_utils.grading.check FOLDER ID`` prints the verdict of one evidence folder as JSON.
"""
from __future__ import annotations

import json
import logging
import sys
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import transformers

from ..learner import LEARNER_ENV, learner_name, learner_seed
from ..messages import first_line
from .evidence import Evidence, EvidenceError
from .questions import QUESTIONS
from .questions.common import Wrong

PASS = "✓"
FAIL = "✗"


@dataclass(frozen=True)
class Verdict:
    check_id: str
    passed: bool
    points: int
    line: str     # one line: "✓ id: ..." or "✗ id: ..."


def none_message(name: str) -> str:
    return f"`{name}` is still None: write your answer in the cell above, run it, then run this cell again."


def _fail(check_id: str, message: str) -> Verdict:
    return Verdict(check_id, False, 0, f"{FAIL} {check_id}: {message}")


@contextmanager
def _quiet():
    """Library logs and warnings off while judging, then every level and filter exactly as they were (the
    learner's kernel keeps what it showed: lesson 7's LOAD REPORT clue among them)."""
    loggers = [logging.getLogger(name) for name in ("transformers", "peft", "accelerate", "torch")]
    levels = [lg.level for lg in loggers]
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for lg in loggers:
                lg.setLevel(logging.ERROR)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        transformers.logging.set_verbosity(verbosity)


def verdict(folder, check_id: str, learner: str | None = None) -> Verdict:
    """Judge the evidence in ``folder`` for ``check_id`` on the data of ``learner`` (the grader passes the name the
    submission printed; the self-check, this kernel's ``learner_name()``). Never raises: every problem is a ✗ line."""
    with _quiet():
        return _verdict(folder, check_id, learner or learner_name())


def _verdict(folder, check_id: str, learner: str) -> Verdict:
    question = QUESTIONS.get(check_id)
    if question is None:
        return _fail(check_id, f"no such check; known ones: {', '.join(sorted(QUESTIONS))}.")
    try:
        ev = Evidence(folder)
        if ev.question != check_id:
            return _fail(check_id, "the evidence belongs to another question: no points.")
        if ev.learner != learner:
            return _fail(check_id, f"this notebook made its data for learner {ev.learner!r} but is graded as "
                                   f"{learner!r}: run it from its first cell without changing ${LEARNER_ENV}.")
        ev.seed = learner_seed(learner)
        for name in question.answers:
            if not ev.has(name):
                return _fail(check_id, f"pass your answer as {name}=... (the check cell was edited?).")
            if ev.raw(name).get("t") == "none":
                return _fail(check_id, none_message(name))
        detail = question.judge(ev)
    except Wrong as wrong:
        return _fail(check_id, first_line(wrong, 400))
    except EvidenceError as exc:
        reason = first_line(exc, 200)
        return _fail(check_id, f"the grader could not use the evidence: {reason}"
                               f"{'' if reason.endswith(('.', '?')) else '.'}")
    except Exception as exc:  # noqa: BLE001 - an answer that breaks a judge fails, in one line
        return _fail(check_id, f"could not use your answer: {type(exc).__name__}: {first_line(exc, 200)}")
    points = question.points
    return Verdict(check_id, True, points,
                   f"{PASS} {check_id}: {detail} (+{points} point{'s' if points != 1 else ''})")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m course_utils.grading.check EVIDENCE_FOLDER CHECK_ID", file=sys.stderr)
        return 2
    print(json.dumps(asdict(verdict(Path(args[0]), args[1])), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
