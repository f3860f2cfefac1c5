"""Showing the warnings a library call gives, as stable text in the notebook's output.

Defined in lesson 6 (``library_messages``). ``setup_notebook`` quiets transformers and peft so that lessons are
readable; the problems of lessons 6 and 7 are *announced* by warnings, so this context manager turns them back on
for one block and prints each one, as the library wrote it, without colour codes or this machine's folder names.
"""
from __future__ import annotations

import logging
import os
import re
import warnings
from contextlib import contextmanager
from pathlib import Path

ANSI = re.compile(r"\x1b?\[[0-9;]*m")
LOGGERS = ("transformers", "peft")


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def clean(text: str, root: str | Path | None = None) -> str:
    """``text`` without terminal colour codes, with paths under ``root`` (default: the working folder) relative."""
    root = str(Path(root if root is not None else os.getcwd()).resolve())
    return ANSI.sub("", str(text)).replace(root + os.sep, "").replace(root, ".").rstrip()


@contextmanager
def library_messages(max_lines: int = 12):
    """Run the block with Python warnings and transformers/peft log warnings on, then print each one.

    Every message is printed once, as ``Category: text`` (at most ``max_lines`` lines each). Prints
    ``(no warnings)`` when there were none, so a fix is visibly silent.
    """
    handler = _Collect()
    loggers = [logging.getLogger(name) for name in LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.removeHandler(handler)
            lg.setLevel(level)
    shown = [f"{w.category.__name__}: {w.message}" for w in caught]
    shown += [f"{r.name} {r.levelname}: {r.getMessage()}" for r in handler.records]
    seen = []
    for text in map(clean, shown):
        if text not in seen:
            seen.append(text)
    for text in seen:
        lines = text.splitlines()
        more = f"\n    ... ({len(lines) - max_lines} more lines)" if len(lines) > max_lines else ""
        print("\n    ".join(lines[:max_lines]) + more)
    if not seen:
        print("(no warnings)")
