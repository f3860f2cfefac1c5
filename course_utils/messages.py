"""One-line error text: every message the course prints about an exception goes through here."""
from __future__ import annotations


def first_line(text, limit: int = 240, last: bool = False) -> str:
    """The first (``last``: the last) non-blank line of ``text``, stripped, at most ``limit`` characters."""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return ((lines[-1] if last else lines[0]) if lines else "")[:limit]


def one_line(exc: BaseException, limit: int = 200, last: bool = False) -> str:
    """``Type: first line of the message`` (``last``: its last line), at most ``limit`` characters."""
    return f"{type(exc).__name__}: {first_line(exc, limit, last)}"[:limit]
