"""course_utils.library_messages and load_reports: the warnings of a block, printed once each, stable across machines;
a LOAD REPORT in full once, then one line per repeat."""
import importlib
import logging
import os
import sys
import warnings

import pytest

from course_utils.library_messages import clean, library_messages
from course_utils.load_reports import RepeatedReports, shorten_repeated_reports


def test_python_warnings_and_library_logs_are_printed_once_each(capsys):
    logging.getLogger("transformers").setLevel(logging.ERROR)  # as setup_notebook leaves it
    with library_messages():
        warnings.warn("first", UserWarning, stacklevel=1)
        warnings.warn("first", UserWarning, stacklevel=1)
        logging.getLogger("transformers.modeling_utils").warning("\x1b[1mREPORT\x1b[0m from: %s/model", os.getcwd())
        logging.getLogger("peft.tuners").info("not a warning")
    out = capsys.readouterr().out.splitlines()
    assert out == ["UserWarning: first", "transformers.modeling_utils WARNING: REPORT from: model"]
    assert logging.getLogger("transformers").level == logging.ERROR  # restored


def test_a_silent_block_says_so(capsys):
    with library_messages():
        pass
    assert capsys.readouterr().out == "(no warnings)\n"


def test_long_messages_are_cut_with_a_count(capsys):
    with library_messages(max_lines=2):
        warnings.warn("a\nb\nc\nd", stacklevel=1)
    assert capsys.readouterr().out.splitlines() == ["UserWarning: a", "    b", "    ... (2 more lines)"]


def test_clean_makes_paths_relative(tmp_path):
    assert clean(f"[1mX[0m in {tmp_path}/sub and {tmp_path}", root=tmp_path) == "X in sub and ."


def test_the_block_error_still_restores_the_loggers_and_shows_what_was_logged(capsys):
    logger = logging.getLogger("peft")
    before = logger.level, list(logger.handlers), logger.propagate
    try:
        with library_messages():
            logging.getLogger("peft.x").warning("details first")
            raise KeyError("boom")
    except KeyError:
        pass
    assert (logger.level, list(logger.handlers), logger.propagate) == before
    assert capsys.readouterr().out == "peft.x WARNING: details first\n"


def test_noise_stays_hidden_and_the_library_handler_does_not_print_twice(capsys):
    with library_messages():
        warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning, stacklevel=1)
        logging.getLogger("transformers.x").warning("once")
        logging.getLogger("transformers.y").warning("`loss_type=None` was set in the config but it is unrecognized.")
    captured = capsys.readouterr()
    assert captured.out == "transformers.x WARNING: once\n" and "once" not in captured.err


def test_a_hidden_message_can_be_shown_when_it_is_the_lesson(capsys):
    text = "Could not find a config file in base - will assume that the vocabulary was not modified."
    with library_messages():
        warnings.warn(text, stacklevel=1)
    assert capsys.readouterr().out == "(no warnings)\n"
    with library_messages(unhide=("Could not find a config file",)):
        warnings.warn(text, stacklevel=1)
    assert capsys.readouterr().out == f"UserWarning: {text}\n"


def test_a_very_long_line_is_cut_with_a_count(capsys):
    with library_messages(max_chars=10):
        warnings.warn("x" * 30, stacklevel=1)
    assert capsys.readouterr().out == "UserWarnin... (33 more characters)\n"


# ----- a LOAD REPORT in full once, then one line per repeat ------------------------------------------------------
REPORT_TEXT = ("\x1b[1mGPT2ForSequenceClassification LOAD REPORT\x1b[0m from: base\n"
               "Key          | Status  | \nscore.weight | MISSING | \n\nNotes:\n- MISSING:\tnewly initialized.")


def test_a_repeated_report_is_one_line_naming_it_and_its_length():
    reports = RepeatedReports()
    assert reports.shorten(REPORT_TEXT) == REPORT_TEXT  # the first time: in full, untouched
    assert reports.shorten(REPORT_TEXT) == ("GPT2ForSequenceClassification LOAD REPORT from: base "
                                            "(the same 6-line report as above, not repeated)")
    other = REPORT_TEXT.replace("score.weight", "classifier.weight")
    assert reports.shorten(other) == other  # another report: in full
    assert reports.shorten("a warning that is no report") == "a warning that is no report"


def test_the_handler_filter_prints_the_first_report_in_full_then_one_line(capsys):
    logger = logging.getLogger("course_test.reports")
    handler = logging.StreamHandler()
    logger.addHandler(handler)
    logger.propagate = False
    handler.addFilter(RepeatedReports())
    try:
        logger.warning(REPORT_TEXT)
        logger.warning("%s", REPORT_TEXT)  # the same report, logged with arguments
        logger.warning("something else")
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert err.count("score.weight") == 1 and err.count("LOAD REPORT") == 2
    assert "(the same 6-line report as above, not repeated)\nsomething else\n" in err


def test_the_handler_filter_sends_what_the_cell_printed_before_the_report(monkeypatch):
    """A kernel sends stdout in batches but the log handler flushes stderr at once: unflushed, a line printed before
    a load landed after its report in the stored outputs (exercise 7's student copy, built under load)."""
    flushes = []
    monkeypatch.setattr(sys, "stdout", type("Out", (), {"write": len, "flush": lambda self: flushes.append(1)})())
    reports = RepeatedReports()
    for text in (REPORT_TEXT, "something else", REPORT_TEXT):
        reports.filter(logging.LogRecord("transformers", logging.WARNING, __file__, 1, text, (), None))
    assert len(flushes) == 2  # once before each report, never for other messages


def test_library_messages_shortens_a_report_shown_before(capsys, monkeypatch):
    module = importlib.import_module("course_utils.library_messages")  # the module, not the function of that name
    monkeypatch.setattr(module, "REPORTS", RepeatedReports())
    for _ in range(2):
        with library_messages(max_lines=20):
            logging.getLogger("transformers.modeling_utils").warning(REPORT_TEXT)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "transformers.modeling_utils WARNING: GPT2ForSequenceClassification LOAD REPORT from: base"
    assert out[-1].endswith("LOAD REPORT from: base (the same 6-line report as above, not repeated)")
    assert len(out) == 7


def test_shorten_repeated_reports_filters_transformers_handler_once():
    handlers = logging.getLogger("transformers").handlers
    reports = RepeatedReports()
    try:
        shorten_repeated_reports(reports)
        shorten_repeated_reports(reports)
        assert handlers and all(h.filters.count(reports) == 1 for h in handlers)
    finally:
        for h in handlers:
            h.removeFilter(reports)


def test_shorten_repeated_reports_without_a_transformers_handler_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(logging.getLogger("transformers"), "handlers", [])
    with pytest.raises(RuntimeError, match="transformers has no log handler to filter"):
        shorten_repeated_reports(RepeatedReports())
