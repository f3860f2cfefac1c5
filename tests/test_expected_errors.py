import os

import pytest

from course_utils.expected_errors import describe_error, expect_error


class CustomError(KeyError):
    pass


def test_builtin_error_has_no_base_note():
    assert describe_error(ValueError("bad value\nsecond line")) == "ValueError: bad value\n    ... (1 more line)"


def test_library_error_names_the_builtin_to_catch():
    assert describe_error(CustomError("x")).startswith("CustomError (a KeyError): ")


def test_lines_and_tabs():
    exc = RuntimeError("Error(s):\n\tsize mismatch for a\n\tsize mismatch for b\n\tsize mismatch for c")
    assert describe_error(exc, lines=2) == "RuntimeError: Error(s):\n    size mismatch for a\n    ... (2 more lines)"
    with pytest.raises(ValueError, match="at least 1"):
        describe_error(exc, lines=0)


def test_paths_under_root_become_relative(tmp_path):
    exc = FileNotFoundError(f"No such file: {tmp_path}/saved/x.json (in {tmp_path})")
    assert describe_error(exc, root=tmp_path) == "FileNotFoundError: No such file: saved/x.json (in .)"


def test_default_root_is_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert describe_error(OSError(f"at {os.getcwd()}/a")) == "OSError: at a"


def test_expect_error_prints_the_error(capsys):
    with expect_error(ValueError):
        raise ValueError("Adapter nope not found.")
    assert capsys.readouterr().out == "ValueError: Adapter nope not found.\n"


def test_expect_error_fails_when_nothing_is_raised():
    with pytest.raises(AssertionError, match="expected ValueError, but the block ran without an error"):
        with expect_error(ValueError):
            pass


def test_expect_error_lets_other_types_through():
    with pytest.raises(TypeError):
        with expect_error(ValueError):
            raise TypeError("not this one")
