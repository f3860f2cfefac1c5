"""Who the exercise data is made for: each learner gets their own adapters, faults and numbers.

The first cell of every exercise calls ``learner()``. The name comes from ``$COURSE_LEARNER`` when it is set
(an instructor can set it to a class id), else from the operating system's user name. The seed is a hash of the
name, so the same name gives the same data on every machine, and the grader, which reads the name the notebook
printed, makes the same data again. A number copied from a neighbour or from a lesson belongs to other data.
Defined in the exercises' first cell; the grader (``course_utils.grading``) reads ``learner_in_outputs``.
"""
from __future__ import annotations

import getpass
import hashlib
import os
import re

LEARNER_ENV = "COURSE_LEARNER"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
_LINE = "Exercise data made for learner {name!r} (seed {seed})."
_IN_OUTPUT = re.compile(r"Exercise data made for learner '([A-Za-z0-9][A-Za-z0-9._@+-]{0,63})' \(seed \d+\)\.")


class LearnerNameError(ValueError):
    """A learner name the course cannot use as a seed."""


def valid_name(name: str) -> str:
    """``name`` when it can seed exercise data (1-64 letters, digits and ``._@+-``); else a one-line error."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise LearnerNameError(f"{name!r} cannot name a learner: use 1-64 letters, digits or ._@+- "
                               f"(set ${LEARNER_ENV} to your class id, e.g. {LEARNER_ENV}=s1234).")
    return name


def learner_name() -> str:
    """``$COURSE_LEARNER`` if set, else the operating system's user name (``learner`` when there is none)."""
    name = os.environ.get(LEARNER_ENV, "").strip()
    if not name:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):  # no user name (a container's unnamed uid)
            name = "learner"
        name = re.sub(r"[^A-Za-z0-9._@+-]", "_", name)[:64] or "learner"
        if not name[0].isalnum():
            name = "u" + name[:63]
    return valid_name(name)


def learner_seed(name: str | None = None) -> int:
    """The seed of ``name``'s exercise data (default: ``learner_name()``): the same on every machine."""
    digest = hashlib.sha256(f"peft-course:{valid_name(name or learner_name())}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 2**31


def learner() -> str:
    """The exercises' first cell: print whose data this notebook makes, and return the name."""
    name = learner_name()
    print(_LINE.format(name=name, seed=learner_seed(name)))
    return name


def learner_in_outputs(texts) -> str | None:
    """The learner name a notebook printed (its first cell's line), from its outputs' ``texts``; None if none."""
    for text in texts:
        found = _IN_OUTPUT.search(text) if isinstance(text, str) else None
        if found:
            return found.group(1)
    return None
