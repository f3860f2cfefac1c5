"""The grader's type-strict guard: answers must be genuine library objects, never types a notebook made."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from course_utils.grading.verify import foreign_type, verify


class AlwaysEqual:
    def __eq__(self, other):
        return True


class Int(int):
    def __eq__(self, other):
        return True


@pytest.mark.parametrize("value", [24, "x", 1.5, None, True, Path("a"), ["a", Path("b")], {"k": (1, 2)},
                                   torch.zeros(2), torch.float32, torch.device("cpu")])
def test_genuine_values_pass(value):
    assert foreign_type(value) is None


@pytest.mark.parametrize("value, name", [(AlwaysEqual(), "AlwaysEqual"), (Int(3), "Int"),
                                         ([1, [AlwaysEqual()]], "AlwaysEqual"), ({"k": Int(1)}, "Int")])
def test_made_up_types_are_named(value, name):
    assert foreign_type(value) == name


def test_a_function_the_learner_wrote_is_a_real_answer():
    def place(model):
        return model

    assert foreign_type(place) is None and foreign_type(lambda m: m) is None
    assert foreign_type([place, AlwaysEqual()]) == "AlwaysEqual"  # a function does not hide a forged value


def test_a_forged_answer_fails_before_any_check_runs():
    verdict = verify("/nonexistent/checks.py", "ex01_q4", "nonce", n_tensors=Int(24))
    assert verdict.startswith("nonce FAIL ✗ ex01_q4: `n_tensors` is a Int")


def test_checks_that_do_not_load_never_pass():
    assert verify("/nonexistent/checks.py", "ex01_q4", "n1", n_tensors=24).startswith("n1 FAIL")
