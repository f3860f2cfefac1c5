"""Reading a handed-in notebook, whatever the file holds: its cells and their nbgrader roles, which exercise it
is and whose data it was run on. Nothing here raises on a bad file: ``read_submission`` and ``identify_exercise``
say what it is, in one line, for the grader's report (``run.py`` then runs it, ``grader.py`` judges it).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..learner import learner_in_outputs
from ..messages import one_line
from . import exercise_number


def text_of(source) -> str:
    if isinstance(source, str):
        return source
    if isinstance(source, list):
        return "".join(s for s in source if isinstance(s, str))
    return ""


def _nbgrader(cell) -> dict:
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    nbg = meta.get("nbgrader") if isinstance(meta, dict) else None
    return nbg if isinstance(nbg, dict) else {}


def grade_id_of(cell) -> str:
    gid = _nbgrader(cell).get("grade_id")
    return gid if isinstance(gid, str) else ""


def is_code(cell) -> bool:
    return isinstance(cell, dict) and cell.get("cell_type") == "code"


def is_answer(cell) -> bool:
    return is_code(cell) and _nbgrader(cell).get("solution") is True


def is_check(cell) -> bool:
    meta = _nbgrader(cell)
    return is_code(cell) and meta.get("grade") is True and meta.get("solution") is not True


def points_of(cell) -> int:
    pts = _nbgrader(cell).get("points", 0)
    return int(pts) if isinstance(pts, (int, float)) and not isinstance(pts, bool) else 0


def cells_of(nb) -> list:
    cells = nb.get("cells") if isinstance(nb, dict) else None
    return [c for c in cells if isinstance(c, dict)] if isinstance(cells, list) else []


def read_submission(path: Path) -> tuple[dict | None, str | None]:
    """The notebook's JSON object, or None and a one-line reason; never raises."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"could not read the file ({one_line(exc)})"
    if not data.strip():
        return None, "an empty file: not a notebook (save it from Jupyter and hand it in again)"
    try:
        nb = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not a readable notebook (not UTF-8 text)"
    except json.JSONDecodeError as exc:
        return None, f"not a readable notebook (invalid JSON: {exc.msg} at line {exc.lineno})"
    except RecursionError:
        return None, "not a readable notebook (JSON nested too deeply)"
    if not isinstance(nb, dict):
        return None, f"not a notebook (its JSON is a {type(nb).__name__}, not an object with cells)"
    return nb, None


def identify_exercise(nb, path: Path, names) -> str | None:
    """The solution stem a submission belongs to: its metadata, then its grade_ids (``ex06_q1``), then the exercise
    number its file name starts with (``Exercise_06_...``, or the older ``06_...``), then, in nbgrader's layout
    (``submitted/STUDENT/ASSIGNMENT/x.ipynb``), the number of its assignment folder (``ex06``)."""
    by_number = {exercise_number(name): name for name in names}
    meta = nb.get("metadata") if isinstance(nb, dict) else None
    stem = meta.get("course_exercise") if isinstance(meta, dict) else None
    if isinstance(stem, str) and stem in by_number.values():
        return stem
    prefixes = {grade_id_of(c).split("_")[0] for c in cells_of(nb) if grade_id_of(c)}
    for number, name in by_number.items():
        if f"ex{number}" in prefixes:
            return name
    candidates = [path.stem]
    if len(path.parts) >= 4 and path.parts[-4] in ("submitted", "autograded"):
        candidates.append(path.parts[-2])
    return next((by_number[n] for n in map(exercise_number, candidates) if n in by_number), None)


def learner_of(nb, path: Path) -> str:
    """Whose data a submission holds: the name its first cell printed; else, in nbgrader's layout
    (``submitted/STUDENT/ASSIGNMENT/x.ipynb``), the student; else the file's name."""
    texts = []
    for cell in cells_of(nb)[:8]:
        outputs = cell.get("outputs") if isinstance(cell.get("outputs"), list) else []
        texts += [text_of(o.get("text")) for o in outputs if isinstance(o, dict)]
    found = learner_in_outputs(texts)
    if found:
        return found
    parts = path.parts
    candidate = parts[-3] if len(parts) >= 4 and parts[-4] in ("submitted", "autograded") else path.stem
    cleaned = re.sub(r"[^A-Za-z0-9._@+-]", "_", candidate)[:64].lstrip("._@+-")
    return cleaned or "learner"
