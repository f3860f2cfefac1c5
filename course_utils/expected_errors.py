"""Showing an expected error as one stable line: its type, the built-in type to catch, its message.

Defined in lesson 3 (``expect_error``, ``describe_error``), which reproduces the errors of the pinned libraries.
"""
from __future__ import annotations

import builtins
import os
from contextlib import contextmanager
from pathlib import Path


def _builtin_base(exc_type: type) -> type | None:
    """The first built-in exception class ``exc_type`` derives from, or None if it is built in itself."""
    if getattr(builtins, exc_type.__name__, None) is exc_type:
        return None
    return next((c for c in exc_type.__mro__[1:] if getattr(builtins, c.__name__, None) is c), None)


def describe_error(exc: BaseException, lines: int = 1, root: str | Path | None = None) -> str:
    """``Type (a BuiltinBase): first line(s) of the message``, absolute paths under ``root`` (default: the
    working folder) shown relative to it, so the text is the same on every machine."""
    if lines < 1:
        raise ValueError(f"lines must be at least 1, got {lines}.")
    root = str(Path(root if root is not None else os.getcwd()).resolve())
    text = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    shown = "\n    ".join(text[:lines]).replace(root + os.sep, "").replace(root, ".")
    more = len(text) - lines
    if more > 0:
        shown += f"\n    ... ({more} more line{'s' if more > 1 else ''})"
    base = _builtin_base(type(exc))
    kind = type(exc).__name__ + (f" (a {base.__name__})" if base else "")
    return f"{kind}: {shown}"


@contextmanager
def expect_error(*types: type[BaseException], lines: int = 1):
    """Run the block, which must raise one of ``types`` (default: any ``Exception``); print it as one line.

    A block that raises nothing fails with ``AssertionError``; an error of another type is not caught.
    """
    catch = types or (Exception,)
    try:
        yield
    except catch as exc:
        print(describe_error(exc, lines=lines))
    else:
        wanted = " or ".join(t.__name__ for t in catch)
        raise AssertionError(f"expected {wanted}, but the block ran without an error")
