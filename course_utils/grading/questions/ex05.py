"""Exercise 5 (lesson 5, several adapters on one base): the data it gives, and the judges of its questions."""
from __future__ import annotations

from ...adapter_format import CONFIG_FILE, WEIGHTS_FILE
from ...generation import complete
from ...shipped import shipped_adapter
from ...tasks import ner_prompt, sentiment_prompt
from ..evidence import Evidence
from ..evidence import type_name as type_of
from .common import (
    Question,
    active,
    adapter_folder,
    folder,
    holds_file,
    notebook_type,
    peft_model,
    reload,
    require,
    same_logits,
    shipped,
    tokenizer,
)

# The sentence exercise 5 asks the learner to tag with the english_ner adapter.
NER_SENTENCE = "Elena met Omar in Lisbon."
# The review of exercise 5's mixed batch.
REVIEW = "La comida fue excelente y el servicio muy amable."
MIXED_ROWS = (("english_ner", "sentence"), ("spanish_sentiment", "review"), ("__base__", "sentence"))


def mixed_prompts() -> list[str]:
    """Exercise 5 Q4: the three prompts of the mixed batch, in order (see MIXED_ROWS for the adapter of each row)."""
    texts = {"sentence": ner_prompt(NER_SENTENCE), "review": sentiment_prompt(REVIEW)}
    return [texts[kind] for _, kind in MIXED_ROWS]


def _matches_shipped(model, name: str) -> None:
    require(holds_file(model, name, shipped_adapter(name) / WEIGHTS_FILE),
            f"the adapter named {name!r} does not hold the weights of the shipped {name} adapter.")


def _q1(ev: Evidence) -> str:
    """Lesson 5: both shipped adapters loaded onto one base, under their own names."""
    model = peft_model(ev, "model")
    names = sorted(model.peft_config)
    for name in ("spanish_sentiment", "english_ner"):
        require(name in names, f"no adapter named {name!r} (the model has {names}).")
        _matches_shipped(model, name)
    return "spanish_sentiment and english_ner loaded on one base with the shipped weights"


def _q2(ev: Evidence) -> str:
    """Lesson 5: the NER adapter switched on, and its greedy output on NER_SENTENCE."""
    model = peft_model(ev, "model")
    now = active(model, "model")
    require(now == "english_ner", f"the active adapter is {now!r}, not english_ner.")
    text = ev.value("ner_output")
    notebook_type(text, "ner_output")
    require(isinstance(text, str), f"`ner_output` should be the generated text, not a {type_of(text)}.")
    expected = complete(shipped("english_ner"), tokenizer(), ner_prompt(NER_SENTENCE))
    require(text.strip() == expected.strip(), "that is not what english_ner writes for the sentence: "
                                              "generate with the NER adapter active, on the NER prompt.")
    return f"english_ner active; it tags the sentence as {text.strip()!r}"


def _q3(ev: Evidence) -> str:
    """Lesson 5: both adapters saved under one folder so that each reloads on its own."""
    root = folder(ev, "saved_root")
    for name in ("spanish_sentiment", "english_ner"):
        sub = root / name
        require((sub / CONFIG_FILE).is_file(),
                f"no {name}/{CONFIG_FILE} under the folder: save both adapters in one folder.")
        adapter_folder(sub)
        require((sub / WEIGHTS_FILE).is_file(), f"no {WEIGHTS_FILE} in {name}/: save with the default format.")
        same_logits(shipped(name), reload(sub), f"the {name} adapter reloaded from {name}/")
    return "each adapter reloads from its subfolder and gives the shipped adapter's logits"


def _row_texts(ev: Evidence, name: str) -> list[str]:
    value = ev.value(name)
    notebook_type(value, name)
    require(isinstance(value, (list, tuple)), f"`{name}` should be a list of 3 texts, not a {type_of(value)}.")
    require(len(value) == len(MIXED_ROWS), f"`{name}` has {len(value)} rows; the batch has {len(MIXED_ROWS)}.")
    require(all(isinstance(v, str) for v in value), f"`{name}` should hold the generated texts (strings).")
    return list(value)


def _q4(ev: Evidence) -> str:
    """Lesson 5: one mixed-adapter batch, checked row by row against one-adapter-at-a-time runs."""
    mixed, single = _row_texts(ev, "mixed"), _row_texts(ev, "single")
    tok = tokenizer()
    both = reload(shipped_adapter("spanish_sentiment"), adapter_name="spanish_sentiment")
    both.load_adapter(str(shipped_adapter("english_ner")), adapter_name="english_ner")
    prompts = mixed_prompts()
    names = [name for name, _ in MIXED_ROWS]
    expected_mixed = complete(both, tok, prompts, adapter_names=names)
    for i, (name, _) in enumerate(MIXED_ROWS):
        if name == "__base__":
            with both.disable_adapter():
                alone = complete(both, tok, prompts[i])
        else:
            both.set_adapter(name)
            alone = complete(both, tok, prompts[i])
        require(single[i] == alone, f"`single` row {i} is not what {name} writes for its prompt on its own.")
        require(mixed[i] == expected_mixed[i], f"`mixed` row {i} is not what {name} writes in the mixed batch: "
                                               "pass one adapter name per row, in the batch's order.")
    same = sum(m == s for m, s in zip(mixed, single))
    return f"each of the {len(names)} rows right; {same} of {len(names)} rows equal their one-adapter run"


QUESTIONS = (
    Question("ex05_q1", 2, ("model",), _q1),
    Question("ex05_q2", 2, ("ner_output", "model"), _q2),
    Question("ex05_q3", 2, ("saved_root",), _q3),
    Question("ex05_q4", 3, ("mixed", "single"), _q4),
)
