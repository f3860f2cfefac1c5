"""Assertions shared by the exercise-check tests: a check passes with one ✓ line, or fails with one ✗ line."""
import re

import pytest

from course_utils.grading.checks import CheckFailed, check


def fails(check_id: str, pattern: str, **kwargs) -> str:
    with pytest.raises(CheckFailed) as info:
        check(check_id, **kwargs)
    message = str(info.value)
    assert message.startswith(f"✗ {check_id}: ") and "\n" not in message
    assert re.search(pattern, message), message
    return message


def passes(check_id: str, capsys, **kwargs) -> None:
    check(check_id, **kwargs)
    out = capsys.readouterr().out
    assert out.startswith(f"✓ {check_id}: ") and out.count("\n") == 1, out


class AlwaysEqual:
    """A wrong answer that claims to equal anything."""

    def __eq__(self, other):
        return True

    __hash__ = object.__hash__


def scaled_lora_b(model, factor: float):
    """A wrong answer: ``model`` with every LoRA B matrix multiplied by ``factor`` (in place; returns it)."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.mul_(factor)
    return model
