"""course_utils.messages: one line of text from any exception."""
from course_utils.messages import first_line, one_line


def test_one_line_takes_the_first_non_blank_line():
    exc = ValueError("\n\n  first problem  \nsecond line\n")
    assert one_line(exc) == "ValueError: first problem"
    assert one_line(exc, last=True) == "ValueError: second line"


def test_one_line_is_bounded_and_handles_empty_messages():
    assert one_line(RuntimeError()) == "RuntimeError: "
    assert len(one_line(OSError("x" * 1000), limit=50)) == 50


def test_first_line():
    assert first_line("  \n a \n b") == "a"
    assert first_line("") == ""
    assert first_line("abcdef", limit=3) == "abc"
