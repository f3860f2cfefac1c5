"""Showing the warnings a library call gives, as stable text in the notebook's output.

Defined in lesson 6 (``library_messages``); lessons 6 to 9 use it. The problems of those lessons are *announced*
by warnings, so this context manager collects the warnings of one block and prints each one, as the library wrote
it, without colour codes or this machine's folder names.
A LOAD REPORT that transformers logged before in this kernel is printed as one line (``load_reports``).
"""
from __future__ import annotations

import logging
import re
import warnings
from contextlib import contextmanager

from .lesson_setup import NOISY_WARNINGS
from .load_reports import REPORTS, clean

LOGGERS = ("transformers", "peft")


class _Collect(logging.Handler):
    def __init__(self, hidden):
        super().__init__(logging.WARNING)
        self.hidden = hidden
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not any(re.match(pattern, record.getMessage(), re.DOTALL) for pattern in self.hidden):
            self.records.append(record)


@contextmanager
def library_messages(max_lines: int = 12, unhide: tuple[str, ...] = (), max_chars: int = 400):
    """Run the block with Python warnings and transformers/peft log warnings on, then print each one.

    Every message is printed once, as ``Category: text`` (at most ``max_lines`` lines of ``max_chars`` each). Prints
    ``(no warnings)`` when there were none, so a fix is visibly silent. The messages of ``NOISY_WARNINGS`` (those the
    command-line tools hide) stay hidden, except those containing one of the ``unhide`` strings. A LOAD REPORT already
    shown in this kernel is printed as one line (``REPORTS``).
    """
    hidden = [p for p in NOISY_WARNINGS if not any(u in p for u in unhide)]
    handler = _Collect(hidden)
    loggers = [logging.getLogger(name) for name in LOGGERS]
    saved = [(lg.level, lg.handlers[:], lg.propagate) for lg in loggers]
    for lg in loggers:  # only our handler: the libraries' own would print the same message a second time
        lg.handlers[:] = [handler]
        lg.setLevel(logging.WARNING)
        lg.propagate = False
    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for pattern in hidden:  # still hidden: they teach nothing here either
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for lg, (level, handlers, propagate) in zip(loggers, saved):
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate = propagate
        _print(caught, handler.records, max_lines, max_chars)


def _cut(line: str, max_chars: int) -> str:
    return line if len(line) <= max_chars else f"{line[:max_chars]}... ({len(line) - max_chars} more characters)"


def _print(caught, records, max_lines: int, max_chars: int) -> None:
    """Each message once, even when the block raised (a library often logs the details, then raises)."""
    shown = [f"{w.category.__name__}: {w.message}" for w in caught]
    shown += [f"{r.name} {r.levelname}: {REPORTS.shorten(r.getMessage())}" for r in records]
    seen = []
    for text in map(clean, shown):
        if text not in seen:
            seen.append(text)
    for text in seen:
        lines = text.splitlines()
        more = f"\n    ... ({len(lines) - max_lines} more lines)" if len(lines) > max_lines else ""
        print("\n    ".join(_cut(line, max_chars) for line in lines[:max_lines]) + more)
    if not seen:
        print("(no warnings)")
