"""One module per exercise, each with its graded questions (``QUESTIONS``); ``QUESTIONS`` here maps every id."""
from __future__ import annotations

from types import MappingProxyType

from . import ex01, ex02, ex03, ex04, ex05, ex06, ex07, ex08, ex09, ex10, ex11
from .common import Question

QUESTIONS: MappingProxyType[str, Question] = MappingProxyType(
    {q.check_id: q for module in (ex01, ex02, ex03, ex04, ex05, ex06, ex07, ex08, ex09, ex10, ex11)
     for q in module.QUESTIONS})
