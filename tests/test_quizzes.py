import ast
import json
from collections import Counter
from pathlib import Path

import pytest

from course_utils.quizzes import LETTERS, QUIZ_FILE, RIGHT, WRONG, Quiz, learner_quiz, load_quiz, markdown_html

ROOT = Path(__file__).parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def quiz_ids() -> list[str]:
    """Every quiz id in the data file, e.g. ``l01_q1``."""
    return list(json.loads(QUIZ_FILE.read_text(encoding="utf-8")))


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
    with pytest.raises(ValueError, match="No quiz 'l99_q1'.*l01_q1"):
        load_quiz("l99_q1")


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


def test_right_answers_are_spread_over_the_letters_in_the_source():
    letters = Counter(LETTERS[load_quiz(qid).answer] for qid in quiz_ids())
    assert max(letters.values()) <= 0.35 * len(quiz_ids()), letters


@pytest.mark.parametrize("name", ["ada", "grace", "s1001", "ci"])
def test_shuffle_is_a_permutation_that_keeps_each_feedback_with_its_option(name):
    for qid in quiz_ids():
        q, s = load_quiz(qid), learner_quiz(qid, name)
        assert sorted(s.options) == sorted(q.options) and (s.question, s.explanation) == (q.question, q.explanation)
        for new, option in enumerate(s.options):
            old = q.options.index(option)
            assert s.feedback(new) == q.feedback(old), (qid, option)
        assert s.options[s.answer] == q.options[q.answer]
        assert s.reveal() == f"Answer: {LETTERS[s.answer]}. {q.options[q.answer]} — {q.explanation}"


@pytest.mark.parametrize("answer_at", [0, 1, 2])
def test_arranged_puts_the_answer_where_asked(answer_at):
    q = _quiz()
    s = q.arranged(answer_at, "seed")
    assert s.answer == answer_at and s.options[answer_at] == "`4`"
    assert s.feedback(s.options.index("3")) == f"{WRONG} One too few."
    assert q.arranged(answer_at, "seed").options == s.options  # the same seed, the same order


def test_every_learner_gets_right_answers_spread_over_the_letters():
    for n in range(60):
        letters = Counter(LETTERS[learner_quiz(qid, f"s{n}").answer] for qid in quiz_ids())
        assert max(letters.values()) <= 0.35 * len(quiz_ids()), (n, letters)


def test_neighbours_see_different_orders_and_one_learner_always_the_same():
    ids = quiz_ids()
    for a, b in [("ada", "grace"), ("s1001", "s1002"), ("ci", "learner")]:
        differ = [qid for qid in ids if learner_quiz(qid, a).options != learner_quiz(qid, b).options]
        assert len(differ) > 0.6 * len(ids), (a, b, len(differ))
        assert all(learner_quiz(qid, a).options == learner_quiz(qid, a).options for qid in ids)


def test_quiz_shows_this_learners_order(monkeypatch):
    from course_utils import quizzes

    shown = []
    monkeypatch.setattr(quizzes, "display", shown.append)
    for name in ("ada", "grace"):
        monkeypatch.setenv("COURSE_LEARNER", name)
        quizzes.quiz("l01_q1")
        header = shown[-1].children[0].value
        options = learner_quiz("l01_q1", name).options
        positions = [header.index(markdown_html(o)) for o in options]
        assert positions == sorted(positions), (name, options)
