"""transformers' LOAD REPORT: in full the first time, then one line per repeat (``shorten_repeated_reports``).

Defined in lesson 7, which loads a classifier with a new head several times. transformers logs a LOAD REPORT
table (``transformers.utils.loading_report.log_state_dict_report``: logger ``transformers.modeling_utils`` or
``transformers.integrations.peft``, level WARNING, through transformers' own stderr handler) on every load that
leaves weights missing or mismatched. ``RepeatedReports`` remembers each report shown in full in this kernel and
turns a later identical one into one line that names it and says how many lines it has: nothing is dropped
silently, and every other message passes unchanged. ``library_messages`` uses the same memory (``REPORTS``).
"""
from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

from transformers.utils import logging as transformers_logging

ANSI = re.compile(r"\x1b?\[[0-9;]*m")


def clean(text: str, root: str | Path | None = None) -> str:
    """``text`` without terminal colour codes, with paths under ``root`` (default: the working folder) relative."""
    root = str(Path(root if root is not None else os.getcwd()).resolve())
    return ANSI.sub("", str(text)).replace(root + os.sep, "").replace(root, ".").rstrip()


REPORT = re.compile(r"^\w+ LOAD REPORT from: .*$", re.M)


class RepeatedReports(logging.Filter):
    """Remembers each LOAD REPORT shown in full; a later identical one becomes one line naming it (per kernel).

    As a filter on a log handler it rewrites the record of a repeated report; ``shorten`` does the same on text.
    Every other message passes unchanged."""

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def shorten(self, text: str) -> str:
        """``text`` as it is, or, for a LOAD REPORT already shown, its first line and its number of lines."""
        report = clean(text)
        first = REPORT.match(report)
        if not first:
            return text
        if report not in self.seen:
            self.seen.add(report)
            return text
        return f"{first.group(0)} (the same {len(report.splitlines())}-line report as above, not repeated)"

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "LOAD REPORT" in text and not getattr(record, "report_checked", False):
            record.report_checked = True
            sys.stdout.flush()  # what the cell printed before the load goes out first: a kernel sends stdout late
            short = self.shorten(text)
            if short != text:
                record.msg, record.args = short, ()
        return True


REPORTS = RepeatedReports()  # this kernel's memory of the reports shown; library_messages uses it too


def shorten_repeated_reports(reports: RepeatedReports = REPORTS) -> None:
    """Let transformers' own log handler print a LOAD REPORT shown before as one line (see ``RepeatedReports``).

    Lessons 7 and 9 call it once, in their setup cells; calling it again adds nothing. Only repeats change."""
    handlers = transformers_logging.get_logger("transformers").handlers
    if not handlers:
        raise RuntimeError("transformers has no log handler to filter: was transformers.logging reconfigured?")
    for handler in handlers:
        if reports not in handler.filters:
            handler.addFilter(reports)
