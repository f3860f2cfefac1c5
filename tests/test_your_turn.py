"""The lessons' "Your turn" self-check (course_utils/your_turn.py)."""
import pytest
import torch

from course_utils.your_turn import your_turn


def said(capsys, *args, **kwargs):
    your_turn(*args, hint="look at section 2", solution="x = 1", **kwargs)
    return capsys.readouterr().out


def test_open_task_says_so_and_offers_a_solution(capsys):
    out = said(capsys, ..., 3)
    assert out.startswith("Your turn: not answered yet") and "One solution: x = 1" in out


@pytest.mark.parametrize("answer, expected", [(16384, 16384), (0.1 + 0.2, 0.3), ({"a", "b"}, ["b", "a"]),
                                              (torch.ones(2), torch.ones(2)),
                                              (torch.float32, torch.float32), (["c_attn"], ("c_attn",)), (True, True)])
def test_right_answers_pass(capsys, answer, expected):
    assert said(capsys, answer, expected).startswith("✓ Right")


@pytest.mark.parametrize("answer, expected", [(16383, 16384), (0.31, 0.3), ({"a"}, ["b", "a"]),
                                              (torch.zeros(2), torch.ones(2)), (torch.bfloat16, torch.float32),
                                              (torch.ones(2), torch.float32), (torch.ones(3), torch.ones(2)),
                                              (["c_proj"], ["c_attn"]), (1, True), (None, 0), ("16384", 16384)])
def test_wrong_answers_fail_with_the_hint(capsys, answer, expected):
    out = said(capsys, answer, expected)
    assert out.startswith("✗ Not yet") and "Hint: look at section 2" in out


def test_check_function_judges(capsys):
    def even(n):
        return None if n % 2 == 0 else f"{n} is odd"

    assert said(capsys, 4, check=even).startswith("✓ Right")
    assert "3 is odd" in said(capsys, 3, check=even)
    assert "raised TypeError" in said(capsys, "x", check=even)
