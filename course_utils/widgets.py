"""An interactive panel to try one base model under each of its adapters.

Defined in lesson 5 (``adapter_playground``, ``playground_reply``, ``known_words``, ``unknown_words``).
"""
from __future__ import annotations

import html
import re

import ipywidgets as w

from .generation import complete
from .messages import one_line
from .tasks import ner_prompt, sentiment_prompt, task_words, template_texts

BASE = "base"
# Prompt formats the learner can pick: the shipped adapters were trained on the first two.
PROMPT_FORMATS = {
    "sentiment (Reseña:)": sentiment_prompt,
    "NER (Sentence:)": ner_prompt,
    "plain text": lambda text: text,
}
# The shipped adapter trained on each prompt format: the panel opens on the pair that matches.
TRAINED_ON = {"sentiment (Reseña:)": "spanish_sentiment", "NER (Sentence:)": "english_ner"}
# The adapters saw only sentences built from the word lists in course_utils/tasks.py: these are the lists
# the panel shows for each prompt format (the template words are known too, but not listed).
KNOWN_WORDS = {fmt: task_words(task) for fmt, task in TRAINED_ON.items()}
_TEMPLATE_TEXT = {fmt: template_texts(task) for fmt, task in TRAINED_ON.items()}
_WORD = re.compile(r"[^\W\d_]+")
EMPTY_REPLY = ("(empty: the continuation starts with a line break or the end-of-text token, and only its first "
               "line is shown. The base model often stops at once on a prompt it was not fine-tuned for.)")


def _adapter_names(model) -> list[str]:
    config = getattr(model, "peft_config", None)
    if not isinstance(config, dict) or not hasattr(model, "disable_adapter"):
        raise TypeError(f"adapter_playground needs a PeftModel (from PeftModel.from_pretrained), "
                        f"got {type(model).__name__}.")
    return list(config)


def known_words(prompt_format: str) -> dict[str, list[str]]:
    """The word lists the adapter trained on ``prompt_format`` has seen, by kind ({} for plain text)."""
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"Unknown prompt format {prompt_format!r}: choose one of {', '.join(PROMPT_FORMATS)}.")
    return KNOWN_WORDS.get(prompt_format, {})


def unknown_words(text: str, prompt_format: str) -> list[str]:
    """The words of ``text`` that no training sentence of ``prompt_format`` contains (case ignored), in order."""
    lists = known_words(prompt_format)
    texts = [item for words in lists.values() for item in words] + _TEMPLATE_TEXT.get(prompt_format, [])
    vocabulary = {word.lower() for item in texts for word in _WORD.findall(re.sub(r"\{\w+\}", " ", item))}
    if not vocabulary:
        return []
    found = [word for word in _WORD.findall(text or "") if word.lower() not in vocabulary]
    return list(dict.fromkeys(found))


def words_line(text: str, prompt_format: str) -> str:
    """What the panel says about ``text``'s words, in one line of plain text."""
    lists = known_words(prompt_format)
    if not lists:
        return "Plain text: no adapter was trained on this format, so any reply is a guess."
    unknown = unknown_words(text, prompt_format)
    if not unknown:
        return "Every word is from the training lists."
    them = "them" if len(unknown) > 1 else "it"
    return (f"Not in the training lists: {', '.join(unknown)}. The {TRAINED_ON[prompt_format]} adapter never saw "
            f"{them}, so expect a wrong answer.")


def _known_html(prompt_format: str) -> str:
    lists = known_words(prompt_format)
    rows = "; ".join(f"<b>{html.escape(kind)}</b>: {html.escape(', '.join(words))}" for kind, words in lists.items())
    if not rows:
        return ""
    # ipywidgets gives HTML a control's line height (28 px): a paragraph of names reads better at 1.5 lines
    return (f'<div style="line-height: 1.5"><small>The {TRAINED_ON[prompt_format]} adapter was trained on these '
            f"words only. {rows}</small></div>")


def playground_reply(model, tokenizer, text: str, adapter: str, prompt_format: str = "NER (Sentence:)",
                     max_new_tokens: int = 16) -> str:
    """What the panel shows: the greedy continuation of ``text`` in ``prompt_format`` under ``adapter``.

    ``adapter`` is one of the model's adapter names or ``"base"`` (no adapter). The model's active
    adapter is left as it was: the choice goes through ``generate(adapter_names=[...])``.
    """
    names = _adapter_names(model)
    if adapter != BASE and adapter not in names:
        raise ValueError(f"No adapter named {adapter!r}: choose one of {', '.join(names + [BASE])}.")
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"Unknown prompt format {prompt_format!r}: choose one of {', '.join(PROMPT_FORMATS)}.")
    text = (text or "").strip()
    if not text:
        return "Type a sentence first."
    prompt = PROMPT_FORMATS[prompt_format](text)
    choice = "__base__" if adapter == BASE else adapter
    reply = complete(model, tokenizer, [prompt], max_new_tokens=max_new_tokens, adapter_names=[choice])[0].strip()
    return reply or EMPTY_REPLY


def adapter_playground(model, tokenizer, text: str = "Maria works for Google in Paris.",
                       prompt_format: str = "NER (Sentence:)"):
    """An ipywidgets panel: type a sentence, pick an adapter (or ``base``) and a prompt format, read the output.

    It opens on the adapter trained for ``prompt_format`` when the model has it. The container has the CSS
    class ``course-adapter-panel``; the generated text is in the element with class ``course-adapter-output``.
    The output updates when any control changes (the sentence when you press Enter or leave the box).
    Under the sentence, one line (class ``course-adapter-words``) names its words that are not in the
    training lists; below the output, the lists themselves (class ``course-adapter-known``).
    Returns the container; its ``.controls`` dict holds the widgets (``text``, ``adapter``, ``format``,
    ``output``, ``words``, ``known``).
    """
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"Unknown prompt format {prompt_format!r}: choose one of {', '.join(PROMPT_FORMATS)}.")
    names = _adapter_names(model) + [BASE]
    matching = TRAINED_ON.get(prompt_format)
    style = {"description_width": "5em", "button_width": "auto"}  # labels are never cut
    box_text = w.Text(value=text, description="Sentence", continuous_update=False,
                      layout=w.Layout(width="36em"), style={"description_width": "5em"})
    adapter = w.ToggleButtons(options=names, value=matching if matching in names else names[0],
                              description="Adapter", style=style)
    fmt = w.ToggleButtons(options=list(PROMPT_FORMATS), value=prompt_format, description="Prompt", style=style)
    output = w.HTML()
    output.add_class("course-adapter-output")
    words = w.HTML()
    words.add_class("course-adapter-words")
    known = w.HTML()
    known.add_class("course-adapter-known")

    def refresh(_=None):
        words.value = html.escape(words_line(box_text.value, fmt.value))
        known.value = _known_html(fmt.value)
        try:
            reply = playground_reply(model, tokenizer, box_text.value, adapter.value, fmt.value)
        except Exception as exc:  # show it in the panel: the learner's typing is kept
            reply = f"Error: {one_line(exc, 300)}"
        output.value = f"<pre>{html.escape(reply)}</pre>"

    for control in (box_text, adapter, fmt):
        control.observe(refresh, names="value")
    refresh()
    panel = w.VBox([box_text, words, adapter, fmt, output, known])
    panel.add_class("course-adapter-panel")
    panel.controls = {"text": box_text, "adapter": adapter, "format": fmt, "output": output, "words": words,
                      "known": known}
    return panel
