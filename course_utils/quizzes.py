"""Self-check quizzes at the end of each lesson: pick an answer, get feedback, reveal the explanation.

Defined in lesson 1; every lesson ends with one or more ``quiz(...)`` calls.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import ipywidgets as w
from IPython.display import display

RIGHT = "✓ Right."
WRONG = "✗ Not quite."


@dataclass
class Quiz:
    """A multiple-choice question. ``answer`` is the index of the right option in ``options``.

    ``hints`` maps a wrong option's index to a sentence that says why it is wrong.
    """

    question: str
    options: list[str]
    answer: int
    explanation: str
    hints: dict[int, str] = field(default_factory=dict)

    def __post_init__(self):
        if not 0 <= self.answer < len(self.options):
            raise ValueError(f"answer must index one of the {len(self.options)} options, got {self.answer}")

    def feedback(self, choice: int | None) -> str:
        """The text shown after the learner checks ``choice`` (None: nothing picked yet)."""
        if choice is None:
            return "Pick an answer first."
        if choice == self.answer:
            return f"{RIGHT} {self.explanation}"
        return f"{WRONG} {self.hints.get(choice, 'Read the section again and try another answer.')}"

    def widget(self):
        """An ipywidgets panel: radio buttons, a Check button, feedback, and a Show explanation button."""
        radio = w.RadioButtons(options=[(o, i) for i, o in enumerate(self.options)], value=None,
                               layout=w.Layout(width="max-content"))
        check = w.Button(description="Check", button_style="primary")
        reveal = w.Button(description="Show explanation")
        out = w.HTML()

        def on_check(_):
            out.value = self.feedback(radio.value)

        def on_reveal(_):
            out.value = f"Answer: {self.options[self.answer]}. {self.explanation}"

        check.on_click(on_check)
        reveal.on_click(on_reveal)
        box = w.VBox([w.HTML(f"<b>{self.question}</b>"), radio, w.HBox([check, reveal]), out])
        box.add_class("course-quiz")
        return box


def quiz(question: str, options: list[str], answer: int, explanation: str, hints: dict[int, str] | None = None):
    """Show a quiz widget in the notebook (see ``Quiz``)."""
    display(Quiz(question, list(options), answer, explanation, hints or {}).widget())
