"""An interactive panel to try one base model under each of its adapters.

Defined in lesson 5 (``adapter_playground``, ``playground_reply``).
"""
from __future__ import annotations

import html

import ipywidgets as w

from .generation import complete
from .messages import one_line
from .tasks import ner_prompt, sentiment_prompt

BASE = "base"
# Prompt formats the learner can pick: the shipped adapters were trained on the first two.
PROMPT_FORMATS = {
    "sentiment (Reseña:)": sentiment_prompt,
    "NER (Sentence:)": ner_prompt,
    "plain text": lambda text: text,
}
# The shipped adapter trained on each prompt format: the panel opens on the pair that matches.
TRAINED_ON = {"sentiment (Reseña:)": "spanish_sentiment", "NER (Sentence:)": "english_ner"}
EMPTY_REPLY = ("(empty: the continuation starts with a line break or the end-of-text token, and only its first "
               "line is shown. The base model often stops at once on a prompt it was not fine-tuned for.)")


def _adapter_names(model) -> list[str]:
    config = getattr(model, "peft_config", None)
    if not isinstance(config, dict) or not hasattr(model, "disable_adapter"):
        raise TypeError(f"adapter_playground needs a PeftModel (from PeftModel.from_pretrained), "
                        f"got {type(model).__name__}.")
    return list(config)


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
    Returns the container; its ``.controls`` dict holds the widgets (``text``, ``adapter``, ``format``,
    ``output``).
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

    def refresh(_=None):
        try:
            reply = playground_reply(model, tokenizer, box_text.value, adapter.value, fmt.value)
        except Exception as exc:  # show it in the panel: the learner's typing is kept
            reply = f"Error: {one_line(exc, 300)}"
        output.value = f"<pre>{html.escape(reply)}</pre>"

    for control in (box_text, adapter, fmt):
        control.observe(refresh, names="value")
    refresh()
    panel = w.VBox([box_text, adapter, fmt, output])
    panel.add_class("course-adapter-panel")
    panel.controls = {"text": box_text, "adapter": adapter, "format": fmt, "output": output}
    return panel
