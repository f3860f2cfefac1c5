"""Self-checks for the "Your turn" cells of every lesson (defined for lesson 1, used in every lesson).

A "Your turn" task is a markdown cell that sets a small task on what the learner just saw, a code cell where the
learner writes the answer (it starts as ``answer = ...``), and a check cell::

    your_turn(answer, expected, hint="count both matrices of every layer", solution="4 * (128*4 + 4*384)")

``expected`` is computed by the check cell from the live objects, never typed in. Instead of ``expected`` a
``check`` function may judge: it returns a one-line reason when the answer is wrong and ``None`` when right.
The check prints one line: ``✓`` with what was verified, ``✗`` with the hint, or, while the cell above still holds
``...``, that the task is open and one solution (lessons are for learning: the stored outputs show it).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

OPEN = "Your turn: not answered yet — replace the `...` in the cell above, run it, then run this cell again."


def _same(answer: Any, expected: Any) -> bool:
    """Equal, with floats compared to 6 significant digits and tensors with ``torch.equal``."""
    if isinstance(answer, bool) or isinstance(expected, bool):
        return answer is expected
    if isinstance(answer, (int, float)) and isinstance(expected, (int, float)):
        return math.isclose(answer, expected, rel_tol=1e-6, abs_tol=1e-12)
    if type(answer).__module__.startswith("torch") and type(expected).__module__.startswith("torch"):
        # only reached with tensors, so this module imports without loading torch
        import torch

        if isinstance(answer, torch.Tensor) and isinstance(expected, torch.Tensor):
            return answer.shape == expected.shape and bool(torch.equal(answer, expected))
        return bool(answer == expected)  # dtypes, devices, sizes
    if isinstance(answer, (list, tuple, set, frozenset)) and isinstance(expected, (list, tuple, set, frozenset)):
        if isinstance(expected, (set, frozenset)) or isinstance(answer, (set, frozenset)):
            return set(answer) == set(expected)
        return len(answer) == len(expected) and all(_same(a, e) for a, e in zip(answer, expected))
    try:
        return bool(answer == expected)
    except Exception:  # noqa: BLE001 - an answer whose == raises is simply not equal
        return False


def your_turn(answer: Any, expected: Any = None, *, check: Callable[[Any], str | None] | None = None,
              hint: str, solution: str) -> None:
    """Print one line judging ``answer``: against ``expected``, or by ``check`` (a reason string when wrong)."""
    if answer is ...:
        print(f"{OPEN}\nOne solution: {solution}")
        return
    if check is not None:
        try:
            reason = check(answer)
        except Exception as err:  # noqa: BLE001 - a wrong answer may break the check; say so in one line
            reason = f"checking it raised {type(err).__name__}: {err}"
        if reason:
            print(f"✗ Not yet: {reason}. Hint: {hint}")
        else:
            print("✓ Right.")
        return
    if _same(answer, expected):
        print(f"✓ Right: {expected!r}.")
    else:
        print(f"✗ Not yet: you have {answer!r}. Hint: {hint}")
