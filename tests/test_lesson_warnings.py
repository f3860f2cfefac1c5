"""Every warning or library log line in a lesson's stored outputs is explained right next to it.

For each code cell of ``notebooks/NN_*.ipynb``, the lines of its stored text outputs (streams and ``text/plain``)
that look like a library message are found:

* a Python warning, ``SomethingWarning: message`` (as ``setup_notebook`` prints one, or a lesson prints a caught one);
* a library log line, ``[transformers] message`` or ``[peft] message``;
* the header of transformers' load report, ``GPT2LMHeadModel LOAD REPORT from: folder``;
* a logged warning, ``WARNING: message``, ``WARNING:logger:message`` or ``logger WARNING: message``.

The markdown cell just before or just after that code cell must name the message's identifying words: one of
its code names (a word with an underscore, such as ``loss_type``, or a CamelCase name, such as ``ForCausalLMLoss``)
or four of its words in a row. A load report is named by the words "load report".

A load report is shown in full once per lesson: when the same model class loads from the same folder again, the
output says so in one line ("the same N-line report as above, not repeated"), as ``shorten_repeated_reports`` prints.
The browser suite applies both rules to each lesson as JupyterLab runs it (tests/browser/test_browser.py).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
ANSI = re.compile(r"\x1b\[[0-9;]*m")
WHERE = re.compile(r"\s+\[[\w./-]+:\d+\]$")  # the "  [peft/tuners/lora/layer.py:2760]" setup_notebook appends
MESSAGE = [
    re.compile(r"\b\w*Warning: (?P<message>.+)"),
    re.compile(r"^\[(?:transformers|peft)\] (?P<message>.+)"),
    re.compile(r"^(?:[\w.]+ )?WARNING:(?:[\w.]+:)?\s*(?P<message>.+)"),
]
LOAD_REPORT = "load report"
CODE_NAME = re.compile(r"\b(?:[A-Za-z]\w*_\w+|_\w+|[A-Z][a-z0-9]+(?:[A-Z][A-Za-z0-9]*)+)\b")
WORD = re.compile(r"[a-z0-9_]+")
RUN = 4  # words in a row that identify a message without code names


def output_lines(cell: dict) -> list[str]:
    """The text lines of a code cell's stored outputs: streams and ``text/plain``, without colour codes."""
    texts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            texts.append("".join(out["text"]))
        elif "text/plain" in out.get("data", {}):
            texts.append("".join(out["data"]["text/plain"]))
    return [ANSI.sub("", line).strip() for text in texts for line in text.splitlines()]


def library_message(line: str) -> str | None:
    """The message of a warning-like line (see the module docstring), or None for an ordinary line."""
    if LOAD_REPORT in line.lower():
        return line
    for pattern in MESSAGE:
        found = pattern.search(line)
        if found:
            return WHERE.sub("", found.group("message"))
    return None


def identifying_words(message: str) -> list[str]:
    """The code names of ``message``; for a load report, the words "load report"."""
    if LOAD_REPORT in message.lower():
        return [LOAD_REPORT]
    return sorted(set(CODE_NAME.findall(message)))


def _runs(text: str) -> set[tuple[str, ...]]:
    words = WORD.findall(text.lower().replace("`", ""))
    return {tuple(words[i:i + RUN]) for i in range(len(words) - RUN + 1)}


def explains(markdown: str, message: str) -> bool:
    """True if ``markdown`` names one of ``message``'s identifying words, or quotes four of its words in a row."""
    names = identifying_words(message)
    if any(name.lower() in markdown.lower() for name in names):
        return True
    return LOAD_REPORT not in names and bool(_runs(message) & _runs(markdown))


def unexplained(cells: list[dict]) -> list[str]:
    """One line per library message in ``cells`` that neither neighbouring markdown cell explains."""
    problems = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        neighbours = [cells[j] for j in (i - 1, i + 1) if 0 <= j < len(cells) and cells[j]["cell_type"] == "markdown"]
        markdown = "\n".join("".join(c["source"]) for c in neighbours)
        for line in output_lines(cell):
            message = library_message(line)
            if message is not None and not explains(markdown, message):
                words = identifying_words(message) or [f"{RUN} words in a row"]
                problems.append(f"cell {i}: {line[:120]!r} -- the markdown next to it should name {', '.join(words)}")
    return problems


REPORT = re.compile(r"(?P<model>\w+) LOAD REPORT from: (?P<folder>\S+)(?P<repeat>.*not repeated\)$)?")


def repeated_reports(cells: list[dict]) -> list[str]:
    """One line per load report printed in full although the same report was printed in full before."""
    seen: dict[tuple[str, str], int] = {}
    problems = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        for line in output_lines(cell):
            found = REPORT.search(line)
            if not found or found["repeat"]:
                continue
            key = (found["model"], found["folder"])
            if key in seen:
                problems.append(f"cell {i}: the {key[0]} load report from {key[1]} again in full (first in cell {seen[key]})")
            seen.setdefault(key, i)
    return problems


@pytest.mark.parametrize("lesson", [
    pytest.param(p, id=p.stem) for p in LESSONS])
def test_every_library_message_is_explained_next_to_it(lesson):
    cells = json.loads(lesson.read_text())["cells"]
    problems = unexplained(cells)
    assert not problems, f"{lesson.name}: library messages without an explanation next to them:\n" + "\n".join(problems)


@pytest.mark.parametrize("lesson", [pytest.param(p, id=p.stem) for p in LESSONS])
def test_a_load_report_is_shown_in_full_once(lesson):
    problems = repeated_reports(json.loads(lesson.read_text())["cells"])
    assert not problems, f"{lesson.name}:\n" + "\n".join(problems)


def test_a_repeated_report_in_full_is_found():
    full = "GPT2ForSequenceClassification LOAD REPORT from: ../course_utils/assets/tiny-gpt2\n    Key | Status\n"
    short = ("[transformers] GPT2ForSequenceClassification LOAD REPORT from: ../x "
             "(the same 7-line report as above, not repeated)\n")
    assert repeated_reports([_code(stream=full), _md("the load report"), _code(stream=short)]) == []
    assert repeated_reports([_code(stream=full), _code(stream=short), _code(stream=full)]) == [
        "cell 2: the GPT2ForSequenceClassification load report from ../course_utils/assets/tiny-gpt2 again in full "
        "(first in cell 0)"]
    other = full.replace("tiny-gpt2", "tiny-llama")
    assert repeated_reports([_code(stream=full), _code(stream=other)]) == []


# The rule itself, on synthetic cells: it must find each kind of message, and it must be able to fail.

def _md(text: str) -> dict:
    return {"cell_type": "markdown", "source": text}


def _code(stream: str = "", plain: str = "") -> dict:
    outputs = [{"output_type": "stream", "name": "stderr", "text": stream}] if stream else []
    if plain:
        outputs.append({"output_type": "execute_result", "data": {"text/plain": plain}})
    return {"cell_type": "code", "source": "", "outputs": outputs}


@pytest.mark.parametrize("line, message", [
    ("UserWarning: fan_in_fan_out is set to False  [peft/tuners/lora/layer.py:2760]", "fan_in_fan_out is set to False"),
    ("FutureWarning: `is_gradient_checkpointing` is deprecated", "`is_gradient_checkpointing` is deprecated"),
    ("[transformers] `torch_dtype` is deprecated! Use `dtype` instead!", "`torch_dtype` is deprecated! Use `dtype` instead!"),
    ("[peft] Loading adapter weights", "Loading adapter weights"),
    ("\x1b[1mGPT2LMHeadModel LOAD REPORT\x1b[0m from: saved/01_adapter", "GPT2LMHeadModel LOAD REPORT from: saved/01_adapter"),
    ("WARNING:root:the cache is stale", "the cache is stale"),
    ("transformers.modeling_utils WARNING: the cache is stale", "the cache is stale"),
    ("10 steps: loss 11.406 -> 0.413", None),
    ("ValueError: Adapter nope not found.", None),
])
def test_warning_like_lines_are_found(line, message):
    found = [library_message(x) for x in output_lines(_code(stream=line + "\n"))]
    assert found == [message]


def test_a_message_is_explained_by_its_code_name_or_four_words_in_a_row():
    message = "`is_gradient_checkpointing` is deprecated and will be removed in v6."
    assert identifying_words(message) == ["is_gradient_checkpointing"]
    assert explains("transformers deprecated `is_gradient_checkpointing`; peft still calls it.", message)
    assert not explains("transformers warns about a deprecated method.", message)
    plain = "You are trying to modify a model with PEFT for a second time."
    assert explains("It warns, `for a second time`, and nests the model.", plain)
    assert not explains("It warns about a second wrap.", plain)
    report = "GPT2LMHeadModel LOAD REPORT from: saved/x"
    assert explains("... and a *load report* that lists ...", report)
    assert not explains("GPT2LMHeadModel from saved/x", report)


def test_an_unexplained_message_fails_and_an_explained_one_passes():
    warning = _code(stream="UserWarning: foo_bar is deprecated  [lib/x.py:1]\n")
    assert unexplained([_md("An unrelated paragraph."), warning, _md("Another one.")]) == [
        "cell 1: 'UserWarning: foo_bar is deprecated  [lib/x.py:1]' -- the markdown next to it should name foo_bar"]
    assert unexplained([_md("Intro."), warning, _md("The `foo_bar` warning means ...")]) == []
    assert unexplained([_md("The `foo_bar` warning below means ..."), warning]) == []
    # Only the neighbours count: an explanation two cells away does not.
    assert len(unexplained([_md("`foo_bar` explained here"), _code(plain="1"), warning, _md("unrelated")])) == 1
    # A message in a text/plain output is checked too.
    assert len(unexplained([_code(plain="[transformers] some_setting was ignored")])) == 1
