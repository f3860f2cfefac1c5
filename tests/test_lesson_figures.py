"""Every figure a lesson's prose quotes is printed by a cell of that notebook.

For each ``notebooks/*.ipynb`` the figures in its markdown cells are collected and each must appear in the
notebook's stored outputs (``text/plain``, ``text/html``, ``text/markdown``, streams, and the text of error
outputs). Commas between digits are dropped on both sides, so ``497,774,208`` matches ``497774208``. A figure
written with ``d`` decimals (or none) also matches an output number that rounds to it at ``d`` decimals
(prose "0.45" or "37x" for an output 0.4504 or 36.8).

What counts as a figure in the prose:

* a number with thousands separators (``1,234``) or decimals (``0.4504``),
* a number in scientific notation (``4.9e-01``), which matches an output number that rounds to it at the
  mantissa's decimals (``4.87e-01`` or ``0.4868`` for ``4.9e-01``),
* a percentage (``12%``, ``3.5 %``) or a ratio (``37x``, ``20-50x``, ``37×``): any digit count,
* any other number of two or more digits (``768``).

What does not (these are names, references and code, not results):

* code: fenced blocks and inline code spans (`` `r=16` ``, `` `1e-4` ``) are skipped;
* numbers glued to letters, underscores or a letter-hyphen: names such as GPT-2, 124M, float32, Conv1D, n_embd;
* references: "lesson(s)", "section(s)", "§" followed by a list of numbers ("Lessons 1, 2 and 4"), and the
  numbered headings ``## 6.``;
* the time a lesson takes: "N min" / "N minutes" / "N hours";
* versions: a decimal within 30 characters after a library name, "version", "release" or "since"
  ("transformers 5.0 to 5.5", "torch's default since 2.6", "bitsandbytes 0.48"), and any dotted number with two
  dots (0.21.2);
* years: a bare four-digit number from 1990 to 2035.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
OUTPUT_MIMES = ("text/plain", "text/html", "text/markdown")

FENCE = re.compile(r"```.*?```|~~~.*?~~~", re.S)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
HEADING_NUMBER = re.compile(r"^(#+\s*)\d+(\.\d+)*\.?", re.M)
REFERENCE = re.compile(r"\b(?:lessons?|sections?|§)\s*\d+(?:(?:\s*(?:,|and|or|to|-|–)\s*)\d+)*", re.I)
DURATION = re.compile(r"\b\d+(?:\.\d+)?\s*(?:min|mins|minutes|hours?|h)\b", re.I)
VERSION_WORDS = re.compile(r"(?:transformers|torch|peft|accelerate|safetensors|tokenizers|bitsandbytes|python|numpy|"
                           r"jupyter\w*|ipywidgets|nbval|version|release|since)", re.I)
DOTTED = re.compile(r"\b\d+\.\d+\.\d+\b")
# A number, with optional thousands separators and decimals; then an optional ratio or percent sign.
NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?:\s?(%)|(x|×)(?![\w]))?(?![\w])")
OUT_NUMBER = re.compile(r"(?<![\d.])\d+(?:\.\d+)?(?![\d])")
# Scientific notation, in prose and in outputs: 4.9e-01, 1e-4, 2.30E+02.
SCIENTIFIC = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)[eE]([-+]?\d+)(?![\w.])")


@dataclass(frozen=True)
class Figure:
    text: str      # as quoted, e.g. "497,774,208" or "37x"
    value: str     # the number without separators, e.g. "497774208" or "37"
    cell: int


def _blank(match: re.Match) -> str:
    """Replace a match by spaces of the same length (keeps offsets; joins nothing)."""
    return " " * len(match.group(0))


def prose_figures(markdown: str, cell: int = 0) -> list[Figure]:
    """The figures quoted in one markdown cell's text (see the module docstring for the rules)."""
    text = FENCE.sub(_blank, markdown)
    text = CODE_SPAN.sub(_blank, text)
    text = HEADING_NUMBER.sub(lambda m: m.group(1) + " " * (len(m.group(0)) - len(m.group(1))), text)
    text = REFERENCE.sub(_blank, text)
    text = DURATION.sub(_blank, text)
    text = DOTTED.sub(_blank, text)
    found = [Figure(m.group(0), m.group(0), cell) for m in SCIENTIFIC.finditer(text)]
    text = SCIENTIFIC.sub(_blank, text)
    for m in NUMBER.finditer(text):
        start = m.start()
        if start >= 2 and text[start - 1] in "-‑" and text[start - 2].isalpha():
            continue  # GPT-2, Llama-3: a name
        whole, decimals, percent, ratio = m.group(1), m.group(2), m.group(3), m.group(4)
        value = whole.replace(",", "") + (decimals or "")
        if decimals and VERSION_WORDS.search(text[max(0, start - 30):start]):
            continue
        if not decimals and "," not in whole and not percent and not ratio:
            if len(whole) < 2:
                continue
            if len(whole) == 4 and 1990 <= int(whole) <= 2035:
                continue  # a year
        found.append(Figure(m.group(0).strip(), value, cell))
    # A range "2-5x": its one-digit first end is a ratio too (a two-digit one was found above).
    for m in re.finditer(r"(?<![\w.])(\d)[-–]\d+(?:\.\d+)?(?:x|×)(?!\w)", text):
        found.append(Figure(m.group(1), m.group(1), cell))
    return found


def output_text(notebook: dict) -> str:
    """The text of every stored output of every code cell, commas between digits removed."""
    parts = []
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind == "stream":
                parts.append(_joined(out.get("text", "")))
            elif kind in ("execute_result", "display_data"):
                data = out.get("data", {})
                parts.extend(_joined(data[m]) for m in OUTPUT_MIMES if m in data)
            elif kind == "error":
                parts.append(f"{out.get('ename', '')}: {out.get('evalue', '')}")
    return re.sub(r"(?<=\d),(?=\d{3})", "", "\n".join(parts))


def _joined(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _rounds_to(output_number: str, figure: str) -> bool:
    places = len(figure.split(".")[1]) if "." in figure else 0
    quantum = Decimal(1).scaleb(-places)
    return Decimal(output_number).quantize(quantum, rounding=ROUND_HALF_UP) == Decimal(figure)


def _sci_rounds_to(output_number: Decimal, figure: str) -> bool:
    """``output_number`` written with the figure's exponent rounds to the figure's mantissa (4.87e-01 -> 4.9e-01)."""
    mantissa, exponent = re.split(r"[eE]", figure)
    scaled = output_number.scaleb(-int(exponent))
    if scaled.is_zero() or not -Decimal(10) ** 6 < scaled < Decimal(10) ** 6:
        return Decimal(mantissa).is_zero() and scaled.is_zero()
    return _rounds_to(str(scaled), mantissa)


def printed(figure: Figure, outputs: str) -> bool:
    """True when some number in ``outputs`` is the figure, or rounds to it at the figure's precision."""
    if SCIENTIFIC.fullmatch(figure.value):
        numbers = [Decimal(m.group(0)) for m in SCIENTIFIC.finditer(outputs)]
        numbers += [Decimal(n) for n in OUT_NUMBER.findall(SCIENTIFIC.sub(" ", outputs))]
        return any(_sci_rounds_to(n, figure.value) for n in numbers)
    return any(n == figure.value or _rounds_to(n, figure.value) for n in OUT_NUMBER.findall(outputs))


def unprinted_figures(notebook: dict) -> list[Figure]:
    """The figures quoted by the notebook's markdown that none of its outputs prints."""
    outputs = output_text(notebook)
    missing = []
    for i, cell in enumerate(notebook.get("cells", [])):
        if cell.get("cell_type") == "markdown":
            missing += [f for f in prose_figures(_joined(cell.get("source", "")), i) if not printed(f, outputs)]
    return missing


# ----- the extractor can fail -------------------------------------------------------------------------------
def _nb(markdown: str, printed_text: str) -> dict:
    return {"cells": [{"cell_type": "markdown", "source": markdown, "metadata": {}},
                      {"cell_type": "code", "source": "", "metadata": {}, "execution_count": 1,
                       "outputs": [{"output_type": "stream", "name": "stdout", "text": printed_text}]}]}


def test_a_figure_no_cell_prints_fails():
    nb = _nb("The adapter is **1,234,567** bytes, 37x smaller, and 12.5% of the weights.", "size: 1234567 bytes\n")
    assert [f.text for f in unprinted_figures(nb)] == ["37x", "12.5%"]


def test_printed_figures_pass_with_commas_and_rounding():
    nb = _nb("Sizes **497,774,208** and 9,216 bytes; max 0.45, mean 0.0123; 37x smaller; 25% trainable.",
             "497774208 9,216\nmax 0.4504 mean 0.01234\nratio 36.8\n25.0 %")
    assert unprinted_figures(nb) == []


def test_a_rounded_figure_must_round_the_same_way():
    assert [f.text for f in unprinted_figures(_nb("The gap is 0.46.", "gap 0.4504"))] == ["0.46"]


@pytest.mark.parametrize("text", [
    "# Lesson 12 — title\n**Estimated time.** 40 minutes.",
    "## 10. A section\nSee section 11 and lessons 10, 11 and 12.",
    "GPT-2 (124M) in float32 and bfloat16 with `r=16` and `1e-4`; n_embd, Conv1D.",
    "transformers 5.0 to 5.23 and torch's default since 2.6; peft 0.21.2.",
    "Released in 2019.\n```\nx = 12345\n```",
])
def test_names_references_times_versions_years_and_code_are_not_figures(text):
    assert prose_figures(text) == []


@pytest.mark.parametrize("text, values", [
    ("an adapter is 20-50x smaller", ["20", "50"]),
    ("off by 4.9e-01, then 1e-4 and 2.30E+02", ["4.9e-01", "1e-4", "2.30E+02"]),
    ("2-5x faster", ["2", "5"]),
    ("8 bytes, then 768 rows", ["768"]),
    ("a 3% drop and a 2x speed-up", ["3", "2"]),
])
def test_figures_found(text, values):
    assert sorted(f.value for f in prose_figures(text)) == sorted(values)


@pytest.mark.parametrize("prose, output, missing", [
    ("unmerged 4.9e-01, merged 2.3e-01", "unmerged: 4.87e-01\nmerged: 2.30e-01", []),
    ("unmerged 4.9e-01", "unmerged: 0.4868", []),
    ("merge rounding 1.0e-01", "1.0e-01", []),
    ("merge rounding 1.0e-01", "9.49e-02", ["1.0e-01"]),
    ("off by 4.9e-01", "off by 4.87e+00 and 0.05", ["4.9e-01"]),
])
def test_scientific_figures_must_be_printed(prose, output, missing):
    assert [f.text for f in unprinted_figures(_nb(prose, output))] == missing


# ----- the lessons ------------------------------------------------------------------------------------------
def test_every_lesson_is_checked_including_06_to_09():
    names = {p.name[:3] for p in NOTEBOOKS}
    assert {f"{i:02d}_" for i in range(1, 10)} <= names
    for path in NOTEBOOKS:
        if path.name[:2] in ("06", "07", "08", "09"):  # they quote figures: none would mean the extractor went blind
            nb = json.loads(path.read_text())
            assert any(prose_figures(_joined(c.get("source", ""))) for c in nb["cells"] if c.get("cell_type") == "markdown")



@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_lesson_prose_quotes_only_printed_figures(path):
    missing = unprinted_figures(json.loads(path.read_text()))
    assert not missing, f"{path.name}: the prose quotes figures no cell prints: " + "; ".join(
        f"cell {f.cell}: {f.text!r}" for f in missing) + " (print them in a cell, or stop quoting them)"
