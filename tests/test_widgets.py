import pytest

from course_utils import complete, shipped_adapter
from course_utils.tasks import ner_prompt, sentiment_prompt
from course_utils.widgets import BASE, EMPTY_REPLY, adapter_playground, known_words, playground_reply, unknown_words, words_line

REVIEW = "El hotel fue horrible."


@pytest.fixture(scope="module")
def two_adapters(tokenizer):
    from peft import PeftModel

    from course_utils import load_base_model

    model = PeftModel.from_pretrained(load_base_model(), shipped_adapter("spanish_sentiment"),
                                      adapter_name="spanish_sentiment")
    model.load_adapter(shipped_adapter("english_ner"), adapter_name="english_ner")
    return model


def test_reply_matches_each_adapter(two_adapters, tokenizer):
    model = two_adapters
    for name in ("spanish_sentiment", "english_ner"):
        model.set_adapter(name)
        expected = complete(model, tokenizer, sentiment_prompt(REVIEW), max_new_tokens=16).strip()
        model.set_adapter("english_ner")  # the reply must not depend on the active adapter
        assert playground_reply(model, tokenizer, REVIEW, name, "sentiment (Reseña:)") == expected
    with model.disable_adapter():
        expected = complete(model, tokenizer, ner_prompt("Tom lives near Oslo."), max_new_tokens=16).strip()
    assert playground_reply(model, tokenizer, "Tom lives near Oslo.", BASE) == expected
    assert model.active_adapters == ["english_ner"]


def test_panel_callback_updates_output(two_adapters, tokenizer):
    panel = adapter_playground(two_adapters, tokenizer, text=REVIEW, prompt_format="sentiment (Reseña:)")
    c = panel.controls
    assert "course-adapter-panel" in panel._dom_classes
    assert "course-adapter-output" in c["output"]._dom_classes
    assert list(c["adapter"].options) == ["spanish_sentiment", "english_ner", BASE]
    seen = {}
    for name in c["adapter"].options:
        c["adapter"].value = name  # the browser does this; the observer regenerates
        seen[name] = c["output"].value
    reply = playground_reply(two_adapters, tokenizer, REVIEW, "spanish_sentiment", "sentiment (Reseña:)")
    assert seen["spanish_sentiment"] == f"<pre>{reply}</pre>"
    assert len(set(seen.values())) == 3  # each adapter (and the base) answers differently here
    c["text"].value = "   "
    assert "Type a sentence first." in c["output"].value


def test_panel_escapes_text_and_shows_errors(two_adapters, tokenizer, monkeypatch):
    from course_utils import widgets

    panel = adapter_playground(two_adapters, tokenizer)
    c = panel.controls
    monkeypatch.setattr(widgets, "playground_reply", lambda *a: "<b>x</b>")
    c["text"].value = "anything"  # every change regenerates: there is no Generate button
    assert c["output"].value == "<pre>&lt;b&gt;x&lt;/b&gt;</pre>"

    def boom(*a):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(widgets, "playground_reply", boom)
    c["text"].value = "keep me"
    assert c["output"].value == "<pre>Error: RuntimeError: boom</pre>"
    assert c["text"].value == "keep me"


def test_bad_choices_are_clear(two_adapters, tokenizer):
    with pytest.raises(ValueError, match="No adapter named 'spanish'"):
        playground_reply(two_adapters, tokenizer, REVIEW, "spanish")
    with pytest.raises(ValueError, match="Unknown prompt format"):
        playground_reply(two_adapters, tokenizer, REVIEW, BASE, "chat")


def test_panel_needs_a_peft_model(tokenizer, base_model):
    with pytest.raises(TypeError, match="needs a PeftModel"):
        adapter_playground(base_model, tokenizer)


def test_panel_opens_on_the_adapter_trained_for_its_prompt(two_adapters, tokenizer):
    for fmt, name in (("NER (Sentence:)", "english_ner"), ("sentiment (Reseña:)", "spanish_sentiment")):
        c = adapter_playground(two_adapters, tokenizer, text="Maria works for Google in Paris.",
                               prompt_format=fmt).controls
        assert c["adapter"].value == name
    c = adapter_playground(two_adapters, tokenizer, prompt_format="plain text").controls
    assert c["adapter"].value == "spanish_sentiment"  # no adapter for plain text: the first one
    assert set(c) == {"text", "adapter", "format", "output", "words", "known"}
    assert c["adapter"].style.button_width == "auto" and c["format"].style.button_width == "auto"


def test_the_panel_leaves_the_tokenizer_alone(two_adapters, tokenizer):
    side = tokenizer.padding_side
    playground_reply(two_adapters, tokenizer, REVIEW, "spanish_sentiment", "sentiment (Reseña:)")
    assert tokenizer.padding_side == side


def test_an_empty_answer_is_explained(two_adapters, tokenizer, monkeypatch):
    from course_utils import widgets

    monkeypatch.setattr(widgets, "complete", lambda *a, **k: ["\n"])
    assert playground_reply(two_adapters, tokenizer, REVIEW, BASE, "plain text") == EMPTY_REPLY
    assert "first" in EMPTY_REPLY and "line" in EMPTY_REPLY


NER, SENTIMENT = "NER (Sentence:)", "sentiment (Reseña:)"


def test_known_words_are_the_task_lists():
    from course_utils import tasks

    assert known_words(NER) == {"people": tasks._PER, "places": tasks._LOC, "organisations": tasks._ORG}
    assert "fue horrible" in known_words(SENTIMENT)["negative"]
    assert known_words("plain text") == {}
    with pytest.raises(ValueError, match="Unknown prompt format 'chat'"):
        known_words("chat")


@pytest.mark.parametrize("text, fmt, unknown", [
    ("Lucia visited Carlos in Madrid.", NER, ["Lucia"]),         # Carlos and Madrid are in the lists
    ("Maria works for Google in Paris.", NER, []),
    ("yesterday MARIA visited paris", NER, []),                  # case is ignored
    ("Lucia met Lucia in Gotham 2024.", NER, ["Lucia", "Gotham"]),  # each once, in order; digits are no word
    ("El hotel fue horrible.", SENTIMENT, []),
    ("La película fue un desastre total.", SENTIMENT, ["total"]),
    ("Anything at all", "plain text", []),
])
def test_unknown_words(text, fmt, unknown):
    assert unknown_words(text, fmt) == unknown


def test_words_line_is_one_line_naming_the_unknown_words():
    line = words_line("Lucia visited Carlos in Madrid.", NER)
    assert "\n" not in line and line.startswith("Not in the training lists: Lucia.") and "wrong answer" in line
    assert words_line("Maria works for Google in Paris.", NER) == "Every word is from the training lists."
    assert "no adapter was trained" in words_line("x", "plain text")


def test_panel_flags_unknown_words_and_shows_the_lists(two_adapters, tokenizer):
    c = adapter_playground(two_adapters, tokenizer).controls
    assert "course-adapter-words" in c["words"]._dom_classes and "course-adapter-known" in c["known"]._dom_classes
    assert c["words"].value == "Every word is from the training lists."
    assert "Maria" in c["known"].value and "Google" in c["known"].value and "Paris" in c["known"].value
    c["text"].value = "Lucia visited <Carlos> in Madrid."
    assert c["words"].value.startswith("Not in the training lists: Lucia.")
    c["format"].value = SENTIMENT
    assert "Lucia" in c["words"].value and "visited" in c["words"].value  # English words are unknown in Spanish
    assert "fue horrible" in c["known"].value and "Maria" not in c["known"].value
    c["format"].value = "plain text"
    assert "no adapter was trained" in c["words"].value and c["known"].value == ""
