"""Every lesson has the same shape (issue #22; the Carpentries' episode shape):

a title cell with objectives and a time; at most 30 code cells; its first base-model load shows the real
``from_pretrained`` call that ``load_base_model`` wraps; at least two "Your turn" tasks, each a markdown cell
that sets it, a cell to answer in (``... = ...``) and a ``your_turn(...)`` self-check; key points; a quiz; and a
link to its exercise, ``exercises/Exercise_NN_*.ipynb``, which exists.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MAX_CODE_CELLS = 30
BASE_LOAD = re.compile(r"load_base_model\(|\.from_pretrained\(\s*(?:course_model|BASE|base_path)")
REAL_CALL = re.compile(r"\w+For\w+\.from_pretrained\(\s*(?:course_model\(|BASE\b)")


def shape_problems(cells: list[dict], number: int) -> list[str]:
    """What the lesson ``cells`` (lesson ``number``) lack of the shape above, one line each."""
    src = ["".join(c["source"]) for c in cells]
    kind = [c["cell_type"] for c in cells]
    problems = []
    title = src[0] if cells and kind[0] == "markdown" else ""
    if not re.match(rf"# Lesson {number}\b", title) or "Objectives" not in title or not re.search(r"\d+ ?min", title):
        problems.append(f"the first cell is not '# Lesson {number} ...' with objectives and a time in minutes")
    if (n := kind.count("code")) > MAX_CODE_CELLS:
        problems.append(f"{n} code cells (at most {MAX_CODE_CELLS})")
    first_load = next((s for s, k in zip(src, kind) if k == "code" and BASE_LOAD.search(s)), "")
    if not REAL_CALL.search(first_load):
        problems.append("the first base-model load does not show AutoModelFor...from_pretrained(course_model(...))")
    checks = [i for i, (s, k) in enumerate(zip(src, kind)) if k == "code" and "your_turn(" in s]
    tasks = [i for i in checks if i >= 2 and re.search(r"=\s*\.\.\.", src[i - 1]) and kind[i - 1] == "code"
             and any(kind[j] == "markdown" and "Your turn" in src[j] for j in range(max(0, i - 3), i))]
    if len(tasks) < 2:
        problems.append(f"{len(tasks)} 'Your turn' tasks (markdown task, an answer cell with '= ...', a your_turn "
                        f"check); at least 2")
    if not any(k == "markdown" and re.search(r"^#+ Key points", s, re.M) for s, k in zip(src, kind)):
        problems.append("no 'Key points' heading")
    if not any(k == "code" and "quiz(" in s for s, k in zip(src, kind)):
        problems.append("no quiz")
    links = {m for s, k in zip(src, kind) if k == "markdown" for m in re.findall(r"exercises/(Exercise_\d\d_\w+\.ipynb)", s)}
    if not any(name.startswith(f"Exercise_{number:02d}_") and (ROOT / "exercises" / name).is_file() for name in links):
        problems.append(f"no link to an existing exercises/Exercise_{number:02d}_*.ipynb")
    return problems


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_every_lesson_has_the_course_shape(lesson):
    problems = shape_problems(json.loads(lesson.read_text())["cells"], int(lesson.name[:2]))
    assert not problems, f"{lesson.name}: " + "; ".join(problems)


def test_the_shape_rule_can_fail():
    def md(s):
        return {"cell_type": "markdown", "source": s}

    def code(s):
        return {"cell_type": "code", "source": s}

    bare = [md("# Lesson 3 — x"), code("base = load_base_model()")]
    found = " ".join(shape_problems(bare, 3))
    for part in ("objectives", "from_pretrained", "0 'Your turn'", "Key points", "no quiz", "Exercise_03_"):
        assert part in found, part
    assert "code cells" in " ".join(shape_problems(bare + [code("x")] * 31, 3))
