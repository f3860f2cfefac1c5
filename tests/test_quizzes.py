import ast
import json
from pathlib import Path

import pytest

from course_utils.quizzes import RIGHT, WRONG, Quiz, load_quiz, markdown_html, quiz_ids

ROOT = Path(__file__).parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("0*.ipynb"))


def _quiz():
    return Quiz("`2+2`?", ["3", "`4`", "5"], 1, "Two and two make four.", {0: "One too few."})


def test_feedback_right_wrong_and_none():
    q = _quiz()
    assert q.feedback(1).startswith(RIGHT) and "four" in q.feedback(1)
    assert q.feedback(0) == f"{WRONG} One too few."
    assert q.feedback(2).startswith(WRONG) and "four" not in q.feedback(2)
    assert q.feedback(None) == "Pick an answer first."


@pytest.mark.parametrize("options, answer, match", [(["a", "b"], 3, "answer must index"), (["a"], 0, "2 to")])
def test_bad_quiz_is_one_clear_error(options, answer, match):
    with pytest.raises(ValueError, match=match):
        Quiz("?", options, answer, "")


def test_widget_buttons_give_feedback_and_render_markdown():
    box = _quiz().widget()
    header, radio, buttons, out = box.children
    assert "<code>2+2</code>" in header.value and "<code>4</code>" in header.value and "`" not in header.value
    assert [label for label, _ in radio.options] == ["A", "B", "C"]
    check, reveal = buttons.children
    check.click()
    assert out.value == "Pick an answer first."
    radio.value = 0
    check.click()
    assert out.value.startswith(WRONG)
    radio.value = 1
    check.click()
    assert out.value.startswith(RIGHT)
    reveal.click()
    assert out.value.startswith("Answer: B. <code>4</code>")


def test_markdown_is_escaped():
    assert markdown_html("a < b and `x<y`") == "a &lt; b and <code>x&lt;y</code>"


def test_unknown_id_is_one_clear_error():
    with pytest.raises(ValueError, match="No quiz 'l09_q1'.*l01_q1"):
        load_quiz("l09_q1")


def test_every_stored_quiz_is_valid_and_used_once():
    calls = []
    for nb in LESSONS:
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] == "code":
                tree = ast.parse("".join(cell["source"]))
                for node in ast.walk(tree):
                    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "quiz":
                        assert len(node.args) == 1 and not node.keywords, f"{nb.name}: quiz(...) takes only an id"
                        calls.append((nb.name, node.args[0].value))
    used = [qid for _, qid in calls]
    assert all(isinstance(qid, str) for qid in used), "a lesson calls quiz(...) with the quiz's id only"
    assert sorted(used) == sorted(quiz_ids()), "every quiz in quizzes.json is called once by a lesson"
    for name, qid in calls:
        assert qid.startswith(f"l{name[:2]}_"), f"{name} calls {qid}, another lesson's quiz"
        load_quiz(qid)  # valid: options, answer index


def test_no_lesson_source_shows_a_quiz_answer():
    """The answer and the explanation live in quizzes.json, never in a lesson's cells."""
    sources = {nb.name: "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"])
               for nb in LESSONS}
    for qid in quiz_ids():
        q = load_quiz(qid)
        secrets = [text for text in (q.explanation, *q.hints.values()) if len(text) > 30]
        for name, text in sources.items():
            for secret in secrets:
                assert secret not in text, f"{name} shows {qid}'s answer or explanation: {secret[:60]!r}"
        lesson = sources[next(n for n in sources if n.startswith(qid[1:3]))]
        assert f"quiz({qid!r})" in lesson or f'quiz("{qid}")' in lesson
