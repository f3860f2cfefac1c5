"""Self-check quizzes at the end of each lesson: pick an answer, get feedback, reveal the explanation.

Defined in lesson 1; every lesson ends with ``quiz("l01_q1")``-style calls. The questions, answers and
explanations live in ``course_utils/data/quizzes.json`` (keyed by quiz id), not in the lesson, so the
answer is not in plain sight in the cell a learner reads. Questions, options and feedback are Markdown,
rendered to HTML (backticks become code).

``quiz`` shows each learner the options in their own order, drawn from ``learner_seed()`` (``$COURSE_LEARNER`` or
the user name): neighbours see different letters, the same learner always the same ones, and each option keeps its
feedback. For every learner the right answers are spread evenly over the letters (``answer_positions``), so no
letter is a good guess. The lessons' stored outputs are made with ``COURSE_LEARNER=ci``.
"""
from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import ipywidgets as w
import mistune
from IPython.display import display

from .learner import learner_seed

RIGHT = "✓ Right."
WRONG = "✗ Not quite."
QUIZ_FILE = Path(__file__).parent / "data" / "quizzes.json"
LETTERS = "ABCDEFGH"


def markdown_html(text: str) -> str:
    """``text`` (Markdown) as inline HTML: backticks become ``<code>``, ``<`` is escaped."""
    html = mistune.html(text).strip()
    if html.startswith("<p>") and html.endswith("</p>") and html.count("<p>") == 1:
        html = html[3:-4]  # one paragraph: inline, so it sits next to a label
    return html


@dataclass
class Quiz:
    """A multiple-choice question. ``answer`` is the index of the right option in ``options``.

    ``hints`` maps a wrong option's index to a sentence that says why it is wrong. All texts are Markdown.
    """

    question: str
    options: list[str]
    answer: int
    explanation: str
    hints: dict[int, str] = field(default_factory=dict)

    def __post_init__(self):
        if not 2 <= len(self.options) <= len(LETTERS):
            raise ValueError(f"a quiz needs 2 to {len(LETTERS)} options, got {len(self.options)}")
        if not 0 <= self.answer < len(self.options):
            raise ValueError(f"answer must index one of the {len(self.options)} options, got {self.answer}")
        self.hints = {int(k): v for k, v in self.hints.items()}

    def feedback(self, choice: int | None) -> str:
        """The text (Markdown) shown after the learner checks ``choice`` (None: nothing picked yet)."""
        if choice is None:
            return "Pick an answer first."
        if choice == self.answer:
            return f"{RIGHT} {self.explanation}"
        return f"{WRONG} {self.hints.get(choice, 'Read the section again and try another answer.')}"

    def reveal(self) -> str:
        """The text (Markdown) of the Show explanation button: the right option's letter, then why."""
        return f"Answer: {LETTERS[self.answer]}. {self.options[self.answer]} — {self.explanation}"

    def arranged(self, answer_at: int, seed) -> Quiz:
        """The same quiz with the right option at index ``answer_at`` and the others in an order drawn from
        ``seed``; each hint follows its option."""
        wrong = [i for i in range(len(self.options)) if i != self.answer]
        random.Random(seed).shuffle(wrong)
        order = wrong[:answer_at] + [self.answer] + wrong[answer_at:]  # order[new position] = old position
        return Quiz(self.question, [self.options[old] for old in order], answer_at, self.explanation,
                    {order.index(old): hint for old, hint in self.hints.items()})

    def widget(self):
        """An ipywidgets panel: the question and lettered options (rendered Markdown), radio buttons A, B, ...,
        a Check button, feedback, and a Show explanation button."""
        letters = LETTERS[:len(self.options)]
        listing = "".join(f"<div><b>{letter}.</b> {markdown_html(option)}</div>"
                          for letter, option in zip(letters, self.options))
        radio = w.RadioButtons(options=[(letter, i) for i, letter in enumerate(letters)], value=None,
                               orientation="horizontal", description="Your answer:",
                               style={"description_width": "initial"})
        check = w.Button(description="Check", button_style="primary")
        reveal = w.Button(description="Show explanation", layout=w.Layout(width="auto"))
        out = w.HTML()

        def on_check(_):
            out.value = markdown_html(self.feedback(radio.value))

        def on_reveal(_):
            out.value = markdown_html(self.reveal())

        check.on_click(on_check)
        reveal.on_click(on_reveal)
        box = w.VBox([w.HTML(f"<b>{markdown_html(self.question)}</b>{listing}"), radio,
                      w.HBox([check, reveal]), out])
        box.add_class("course-quiz")
        return box


@cache
def _all_quizzes() -> dict[str, dict]:
    return json.loads(QUIZ_FILE.read_text(encoding="utf-8"))


def load_quiz(quiz_id: str) -> Quiz:
    """The quiz stored under ``quiz_id`` in ``course_utils/data/quizzes.json``."""
    quizzes = _all_quizzes()
    if quiz_id not in quizzes:
        raise ValueError(f"No quiz {quiz_id!r}: the ids look like 'l01_q1' (lesson 01, question 1); "
                       f"known: {', '.join(quizzes)}.")
    return Quiz(**quizzes[quiz_id])


def answer_positions(seed) -> dict[str, int]:
    """Where each quiz's right option goes for the learner of ``seed``: ``{quiz id: option index}``.

    The quizzes are taken in an order drawn from ``seed`` (those with more options first) and each one gets the
    letter it has that is right least often so far, so every learner's right answers spread evenly over the letters.
    """
    sizes = {qid: len(q["options"]) for qid, q in _all_quizzes().items()}
    ids = sorted(sizes)
    random.Random(f"{seed}:answers").shuffle(ids)
    ids.sort(key=lambda qid: -sizes[qid])  # stable: within each size, the drawn order stays
    used: Counter = Counter()
    positions = {}
    for qid in ids:
        positions[qid] = min(range(sizes[qid]), key=lambda i: (used[i], -i))
        used[positions[qid]] += 1
    return positions


def learner_quiz(quiz_id: str, name: str | None = None) -> Quiz:
    """The quiz ``quiz_id`` as learner ``name`` (default: this learner, see ``learner_name``) sees it: its options
    in that learner's order."""
    seed = learner_seed(name)
    q = load_quiz(quiz_id)
    return q.arranged(answer_positions(seed)[quiz_id], f"{seed}:{quiz_id}")


def quiz(quiz_id: str) -> None:
    """Show the quiz ``quiz_id`` (e.g. ``"l01_q1"``) as a widget in the notebook, in this learner's order."""
    display(learner_quiz(quiz_id).widget())
