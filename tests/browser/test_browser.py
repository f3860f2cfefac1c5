"""JupyterLab in headless Chromium, used as a learner uses it.

* The landing page, in JupyterLab as ``make lab`` starts it (its environment and arguments, the course's
  settings and workspace): the start page rendered, the lesson names whole in a narrow file browser, one
  kernel, no pop-up, no nbgrader; the first lesson's code cells whole. ``make lab-instructor`` shows nbgrader.
* The harness itself, on small generated notebooks: a clean run with a quiz passes, and an error
  output is caught (so the lesson tests can fail).
* Each lesson: Run All shows no error output (except in cells tagged raises-exception), every quiz
  answers "✓ Right." / "✗ Not quite.", lesson 1's rank control and lesson 5's adapter panel react (and
  the panel flags the words its adapters never saw).
* Exercise 1: unanswered, its check cells show ✗; with the solution's answers typed in, ✓; its tab reads
  "Exercise_01_…", not its lesson's name.

All of these tests live in this one module so that ``pytest -n 2 --dist loadfile`` gives them one
worker, one JupyterLab server and one browser page (xdist's ``loadgroup`` does not group tests under
pytest 9.2: xdist 3.8 renames ``item._nodeid``, which pytest 9 no longer reads).
"""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest
from lab_page import NBGRADER_PAGES, RAISES_TAG, check_quiz, http_status, move_slider, nbgrader_ui, settled_text, wait_text_change
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from notebook_runs import LESSONS, REPO, exercise, lesson, ran

# The rules the stored outputs are held to (tests/ is not a package: loaded by path, once).
_SPEC = importlib.util.spec_from_file_location("lesson_messages", REPO / "tests" / "test_lesson_warnings.py")
LESSON_MESSAGES = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(LESSON_MESSAGES)

# ----- the harness ------------------------------------------------------------------------------
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def _write(course_copy, name, cells):
    path = course_copy / "harness" / name
    path.parent.mkdir(exist_ok=True)
    nbformat.write(new_notebook(cells=cells, metadata={"kernelspec": KERNELSPEC}), path)
    return f"harness/{name}"


def test_clean_notebook_with_quiz(lab, course_copy):
    rel = _write(course_copy, "clean.ipynb", [
        new_markdown_cell("# A generated notebook"),
        new_code_cell("import time\ntime.sleep(1)\nanswer = 6 * 7\nprint(answer)"),
        new_code_cell("raise ValueError('an expected error')", metadata={"tags": ["raises-exception"]}),
        new_code_cell("from IPython.display import display\nfrom course_utils.quizzes import Quiz\n"
                      "display(Quiz('What is `6 * 7`?', ['41', '42', '43'], 1, 'Six sevens.', {0: 'One short.'}).widget())"),
        new_code_cell("print('after the quiz', answer)"),
    ])
    run = ran(lab, rel, repo=course_copy)
    assert run.problems() == []
    outputs = [o for _, c in run.code_cells() for o in c["outputs"]]
    assert any("after the quiz 42" in "".join(o.get("text", "")) for o in outputs), "the last cell did not run"
    assert any(o.get("output_type") == "error" for o in outputs), "the raises-exception cell did not raise"
    assert "course-quiz" in run.widget_classes
    boxes = lab.require_widgets("course-quiz", rel)
    assert len(boxes) == 1
    assert check_quiz(lab, boxes[0]) == "B"  # the radio buttons are lettered


def test_error_output_is_reported(lab, course_copy):
    rel = _write(course_copy, "broken.ipynb", [
        new_code_cell("x = 1"),
        new_code_cell("1 / 0"),
        new_code_cell("print('never')"),
    ])
    problems = ran(lab, rel, repo=course_copy).problems()
    assert any("cell 1 raised ZeroDivisionError: division by zero" in p for p in problems), problems


# ----- the landing page -------------------------------------------------------------------------------
START_PAGE = "notebooks/START_HERE.md"
SCREENSHOTS = REPO / "test-output" / "browser"  # where conftest.py keeps the pictures
WINDOW = 1280  # conftest.py's viewport width
# Everything a name's topic needs: the file browser may cut only the extension (".ipynb" becomes "…").
NAMES_SHOWN = """els => els.map(e => {
  const text = document.createTreeWalker(e, NodeFilter.SHOW_TEXT).nextNode();
  const stem = e.innerText.replace(/\\.(ipynb|md)$/, '');
  if (!text || e.scrollWidth <= e.clientWidth) return [e.innerText, true];
  const range = document.createRange();
  range.setStart(text, 0);
  range.setEnd(text, Math.min(stem.length, text.length));
  return [e.innerText, range.getBoundingClientRect().right + 12 <= e.getBoundingClientRect().right];
})"""
# The widths of the left side bar and the notebook, and the code editors that scroll sideways (cut off).
LAYOUT = """() => {
  const width = s => { const e = document.querySelector(s); return e ? e.getBoundingClientRect().width : 0; };
  const editors = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .cm-scroller')];
  return {sidebar: width('#jp-left-stack'), notebook: width('.jp-NotebookPanel:not(.lm-mod-hidden)'),
          editors: editors.length, cut: editors.filter(e => e.scrollWidth > e.clientWidth + 1)
                                            .map(e => e.innerText.split('\\n').sort((a, b) => b.length - a.length)[0])};
}"""


def test_landing_page(lab_server, page):
    """``make lab`` as a learner first sees it: the start page, whole lesson names in a narrow file browser,
    one kernel, no pop-up, and no nbgrader; then the first lesson, with its code cells whole."""
    page.goto(f"{lab_server.url}/?token={lab_server.token}")
    try:
        page.wait_for_selector(".jp-MarkdownViewer .jp-RenderedMarkdown h1", timeout=60_000)
        assert page.url.endswith(f"/tree/{START_PAGE}"), page.url
        tabs = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab").all_inner_texts()
        assert [t.strip() for t in tabs] == ["START_HERE.md"], f"the main area shows {tabs}, not the start page alone"
        assert page.locator(".jp-RenderedMarkdown h1").first.inner_text().startswith("Start here")
        links = page.locator(".jp-RenderedMarkdown table a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
        lessons = [Path(p).name for p in LESSONS]
        linked = sorted(m.group(1) for x in links if (m := re.search(r"/files/notebooks/(\d\d_[^/?]+\.ipynb)", x)))
        assert linked == lessons, f"the start page links {linked}"
        step = page.locator(".jp-RenderedMarkdown ol li").first.inner_text()
        named = re.search(r"click the first lesson, (.+?):", " ".join(step.split()))
        assert named and page.locator(".jp-RenderedMarkdown table a", has_text=named.group(1)).count() == 1, (
            f"the first step says {step!r}, which names no link of the table")

        names = page.locator(".jp-DirListing-itemText").evaluate_all(NAMES_SHOWN)
        assert sorted(n for n, _ in names) == sorted(lessons + ["START_HERE.md"]), "the file browser is not in notebooks/"
        cut = [n for n, shown in names if not shown]  # asserted last, so the checks below run too

        page.wait_for_timeout(5000)  # JupyterLab asks about news a few seconds after it starts
        toasts = page.locator(".Toastify__toast").all_inner_texts()
        assert not toasts, f"pop-up notifications on the landing page: {toasts}"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "landing.png"))

        specs = lab_server.api("GET", "/api/kernelspecs")["kernelspecs"]
        assert sorted(specs) == ["python3"], f"make lab offers the kernels {sorted(specs)}"
        page.locator("#jp-MainMenu .lm-MenuBar-item", has_text="File").click()
        page.locator(".lm-Menu-item", has_text="New Launcher").first.click()
        cards = page.locator(".jp-Launcher-section").filter(has_text="Notebook").first.locator(".jp-LauncherCard")
        cards.first.wait_for()
        kernels = [" ".join(t.split()) for t in cards.all_inner_texts()]
        assert kernels == ["Python 3 (ipykernel)"], f"the Launcher offers the kernels {kernels}"

        open_first_lesson(page, lessons[0])
        assert nbgrader_ui(page) == [], f"make lab shows nbgrader to learners: {nbgrader_ui(page)}"
        pages = {path: http_status(lab_server, path) for path in NBGRADER_PAGES}
        assert set(pages.values()) == {404}, f"make lab serves nbgrader's pages: {pages}"
        assert not cut, f"the file browser cuts more than the extension of these names: {cut}"
    finally:
        lab_server.shutdown_kernels()
        page.goto("about:blank")  # the lesson tests open their own page


def open_first_lesson(page, name: str) -> None:
    """Double-click the lesson in the file browser; in the course's layout the notebook gets at least 70% of
    the window, the file browser at most about a fifth, and no code cell is cut off on the right."""
    page.locator(".jp-DirListing-item", has_text=name).first.dblclick()
    page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .cm-content", timeout=60_000)
    page.wait_for_timeout(1000)
    layout = page.evaluate(LAYOUT)
    page.screenshot(path=str(SCREENSHOTS / "first-lesson.png"))
    assert 0 < layout["sidebar"] <= 0.21 * WINDOW, f"the file browser is {layout['sidebar']:.0f} px of {WINDOW}"
    assert layout["notebook"] >= 0.7 * WINDOW, f"the notebook is {layout['notebook']:.0f} px of {WINDOW}"
    assert layout["editors"] > 0, "no code cell editor to measure"
    assert not layout["cut"], f"{len(layout['cut'])} code cells are cut off on the right, e.g. {layout['cut'][:2]}"


def test_instructor_lab_shows_nbgrader(instructor_server, page):
    """``make lab-instructor`` is the same lab with nbgrader: its menu, its side bar and its formgrader."""
    page.goto(f"{instructor_server.url}/?token={instructor_server.token}")
    try:
        page.wait_for_selector(".jp-MarkdownViewer .jp-RenderedMarkdown h1", timeout=60_000)
        menus = [t.strip() for t in page.locator("#jp-MainMenu .lm-MenuBar-item").all_inner_texts()]
        assert "Nbgrader" in menus, f"make lab-instructor shows no Nbgrader menu: {menus}"
        page.locator("#jp-MainMenu .lm-MenuBar-item", has_text="Nbgrader").click()
        items = " ".join(page.locator(".lm-Menu-item").all_inner_texts())
        assert "Formgrader" in items, f"the Nbgrader menu offers {items!r}"
        page.keyboard.press("Escape")
        assert any("Create Assignment" in t for t in nbgrader_ui(page)), nbgrader_ui(page)
        pages = {path: http_status(instructor_server, path) for path in NBGRADER_PAGES}
        assert set(pages.values()) == {200}, f"make lab-instructor does not serve nbgrader's pages: {pages}"
    finally:
        page.goto("about:blank")


# ----- the lessons ------------------------------------------------------------------------------
NOTEBOOKS = LESSONS or [lesson(1)]  # by glob: lessons are split and renamed


@pytest.mark.parametrize("nb", NOTEBOOKS)
def test_lesson_runs_without_error_outputs(lab, nb):
    run = ran(lab, nb)
    problems = run.problems()
    assert not problems, f"{nb} in JupyterLab: " + "; ".join(problems) + f" (screenshot: {run.screenshot})"
    assert run.screenshot.stat().st_size > 10_000


@pytest.mark.parametrize("nb", NOTEBOOKS)
def test_lesson_messages_are_explained_and_reports_shown_once(lab, nb):
    """As JupyterLab ran it: every library message has its explanation next to it, and a repeated load report
    prints one line (the rules of tests/test_lesson_warnings.py, applied to this run's outputs)."""
    cells = ran(lab, nb).saved["cells"]
    problems = LESSON_MESSAGES.unexplained(cells) + LESSON_MESSAGES.repeated_reports(cells)
    assert not problems, f"{nb} in JupyterLab:\n" + "\n".join(problems)


@pytest.mark.parametrize("nb", NOTEBOOKS)
def test_lesson_quizzes_answer_right_and_wrong(lab, nb):
    ran(lab, nb)
    for box in lab.require_widgets("course-quiz", nb):
        check_quiz(lab, box)


@pytest.mark.parametrize("nb", [lesson(1)])
def test_rank_control_updates_adapter_bytes(lab, nb):
    ran(lab, nb)
    for control in lab.require_widgets("course-rank-control", nb):
        before = settled_text(control, lab)
        assert "adapter bytes" in before, f"the rank control shows no 'adapter bytes' text: {before!r}"
        move_slider(lab, control)
        after = wait_text_change(control, lab, before, 60, "the rank control's text to change after moving its slider")
        assert "adapter bytes" in after, f"after moving the slider the text lost 'adapter bytes': {after!r}"


@pytest.mark.parametrize("nb", [lesson(5)])
def test_adapter_panel_switches_generation(lab, nb):
    ran(lab, nb)
    for panel in lab.require_widgets("course-adapter-panel", nb):
        operate_adapter_panel(lab, panel)


SENTENCE = "Lucia visited Carlos in Madrid."


def operate_adapter_panel(lab, panel):
    """Type a sentence (Enter), then pick each other adapter: the generated text must change each time.

    The panel (course_utils.widgets.adapter_playground) has a "Sentence" text box, an "Adapter" toggle
    group, and shows its reply in the element with class course-adapter-output."""
    output = panel.locator(".course-adapter-output")
    assert output.count() == 1, "the adapter panel has no element with class course-adapter-output"
    box = panel.locator("input[type=text]").first
    assert box.count(), "the adapter panel has no text box to type a sentence into"
    settled_text(output, lab)
    box.fill(SENTENCE)
    box.press("Enter")  # the text box commits on Enter; the reply may or may not change (sentiment: no)
    shown = settled_text(output, lab)
    check_known_words(panel)
    group = panel.locator(".widget-toggle-buttons").filter(has=lab.page.locator("label", has_text="Adapter"))
    assert group.count() == 1, "the adapter panel has no toggle group labelled 'Adapter'"
    buttons = group.locator(".widget-toggle-button")
    names = buttons.all_inner_texts()
    others = [i for i in range(buttons.count()) if "mod-active" not in (buttons.nth(i).get_attribute("class") or "")]
    assert len(names) >= 2 and others, f"the adapter panel offers only {names}"
    seen = {shown}
    for i in others:
        buttons.nth(i).click()
        shown = wait_text_change(output, lab, shown, 60, f"the reply to change after switching to {names[i]!r}")
        assert not shown.startswith("Error:"), f"switching to {names[i]!r} shows {shown!r}"
        seen.add(shown)
    assert len(seen) == len(others) + 1, f"two adapters gave the same reply: {seen}"
    assert any(word in reply for reply in seen for word in ("Lucia", "Carlos", "Madrid")), (
        f"no reply mentions a name from the typed sentence {SENTENCE!r}: {seen}")


def check_known_words(panel):
    """The panel lists the words the adapters know, and its one line flags the typed sentence's unknown name."""
    known = panel.locator(".course-adapter-known")
    assert known.count() == 1 and "Maria" in known.inner_text(), "the adapter panel does not list the known words"
    words = panel.locator(".course-adapter-words")
    assert words.count() == 1, "the adapter panel has no element with class course-adapter-words"
    line = " ".join(words.inner_text().split())
    assert line.startswith("Not in the training lists: Lucia."), f"typed {SENTENCE!r}, the panel says {line!r}"
    assert "Carlos" not in line and "Madrid" not in line, f"known names flagged: {line!r}"
    box = words.bounding_box()
    assert box and box["height"] < 40, f"the unknown-words note takes more than one line ({box})"


# ----- exercise 1 -------------------------------------------------------------------------------
EXERCISE = exercise(1)
SOLUTION = REPO / "exercises" / "solutions" / Path(EXERCISE).name
ANSWER_MARK = "# YOUR CODE HERE"


def solution_answers(exercise_cells) -> dict[int, str]:
    """Answer-cell index -> the solution's code for it (between its BEGIN/END SOLUTION markers)."""
    if not SOLUTION.exists():
        pytest.fail(f"{SOLUTION.relative_to(REPO)} is missing: the exercise has no solution to type in")
    sol_cells = json.loads(SOLUTION.read_text())["cells"]
    answers = {}
    for i, cell in enumerate(exercise_cells):
        if cell["cell_type"] == "code" and ANSWER_MARK in "".join(cell["source"]):
            src = "".join(sol_cells[i]["source"])
            assert "BEGIN SOLUTION" in src, f"solution cell {i} has no BEGIN SOLUTION block"
            answers[i] = "\n".join(line for line in src.splitlines() if "SOLUTION ###" not in line
                                   and not line.strip().startswith("### "))
    return answers


@pytest.mark.parametrize("nb", [EXERCISE])
def test_exercise_checks_turn_green_with_right_answers(lab, nb):
    run = ran(lab, nb)
    assert run.problems() == [], f"{nb}: " + "; ".join(run.problems())
    cells = run.saved["cells"]
    answers = solution_answers(cells)
    assert lab.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell").count() == len(cells)
    assert answers, f"{nb} has no answer cell marked {ANSWER_MARK!r}"
    start = min(answers)
    for index, code in answers.items():
        check = index + 1
        assert RAISES_TAG in cells[check]["metadata"].get("tags", []), f"cell {check} is not a check cell"
        before = lab.output_text(check)
        assert "✗" in before and "✓" not in before, f"unanswered check cell {check} shows {before!r}"
        # as a learner goes on: the given cells since the last check (the teammate's update), then answer and check
        for given in range(start, index):
            if cells[given]["cell_type"] == "code":
                lab.replace_cell_source(given, "".join(cells[given]["source"]))  # puts the cursor there
                lab.run_cells_from(given, 1)
        lab.replace_cell_source(index, code)
        lab.run_cells_from(index, 2)
        start = check + 1
        after = lab.output_text(check)
        assert "✓" in after and "✗" not in after, (
            f"with the solution typed into cell {index}, check cell {check} shows {after!r}")
    lab.screenshot(f"exercises__{Path(EXERCISE).stem}_answered")


@pytest.mark.parametrize("nb", [EXERCISE])
def test_exercise_tab_reads_exercise(lab, nb):
    """An exercise's tab starts "Exercise_0...", so it is never taken for its lesson's tab (same topic)."""
    if not list(REPO.glob("exercises/Exercise_*.ipynb")):
        pytest.skip("no exercises/Exercise_*.ipynb yet: the exercise files are being renamed to Exercise_NN_topic.ipynb")
    ran(lab, nb)
    number = int(re.search(r"Exercise_(\d+)_", nb).group(1))
    ran(lab, lesson(number))
    texts = {path: " ".join(lab.tab(path).first.inner_text().split()) for path in (nb, lesson(number))}
    assert texts[nb].startswith("Exercise_0"), f"the exercise's tab reads {texts[nb]!r}"
    assert texts[nb] != texts[lesson(number)], f"the exercise and its lesson have the same tab text: {texts}"
