import pytest

from course_utils.quizzes import RIGHT, WRONG, Quiz


def _quiz():
    return Quiz("2+2?", ["3", "4", "5"], 1, "Two and two make four.", {0: "One too few."})


def test_feedback_right_wrong_and_none():
    q = _quiz()
    assert q.feedback(1).startswith(RIGHT) and "four" in q.feedback(1)
    assert q.feedback(0) == f"{WRONG} One too few."
    assert q.feedback(2).startswith(WRONG) and "four" not in q.feedback(2)
    assert q.feedback(None) == "Pick an answer first."


def test_bad_answer_index():
    with pytest.raises(ValueError, match="answer must index"):
        Quiz("?", ["a"], 3, "")


def test_widget_buttons_give_feedback():
    box = _quiz().widget()
    radio, buttons, out = box.children[1], box.children[2], box.children[3]
    check, reveal = buttons.children
    check.click()
    assert out.value == "Pick an answer first."
    radio.value = 0
    check.click()
    assert out.value.startswith(WRONG)
    radio.value = 1
    check.click()
    assert out.value.startswith(RIGHT)
    reveal.click()
    assert out.value.startswith("Answer: 4.")
