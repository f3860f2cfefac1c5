"""Driving JupyterLab in the browser the way a learner does: open a notebook, Run All, use the widgets.

Every wait is bounded and every failure says what was expected on screen.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Locator, Page

KERNEL_STATUS = ".jp-StatusBar-TextItem[title^='Change kernel']"
NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook"
RAISES_TAG = "raises-exception"


class LabError(AssertionError):
    """Something a learner would see go wrong (or a wait that never ended)."""


@dataclass
class NotebookRun:
    """What happened when a notebook was run in the browser."""

    rel_path: str
    seconds: float
    saved: dict                      # the notebook JSON as JupyterLab saved it after the run
    screenshot: Path | None = None
    widget_classes: set[str] = field(default_factory=set)

    def code_cells(self):
        return [(i, c) for i, c in enumerate(self.saved["cells"]) if c["cell_type"] == "code"]

    def slowest_cells(self, n: int = 3) -> list[tuple[int, float]]:
        """(cell index, seconds) of the ``n`` slowest cells, from the timings JupyterLab recorded."""
        from datetime import datetime

        times = []
        for i, cell in self.code_cells():
            t = cell.get("metadata", {}).get("execution", {})
            try:
                start = datetime.fromisoformat(t["iopub.execute_input"].replace("Z", "+00:00"))
                end = datetime.fromisoformat(t["shell.execute_reply"].replace("Z", "+00:00"))
            except (KeyError, ValueError):
                continue
            times.append((i, (end - start).total_seconds()))
        return sorted(times, key=lambda x: -x[1])[:n]

    def problems(self) -> list[str]:
        """Cells that errored without the raises-exception tag, and code cells that never ran."""
        found = []
        for i, cell in self.code_cells():
            tagged = RAISES_TAG in cell.get("metadata", {}).get("tags", [])
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error" and not tagged:
                    found.append(f"cell {i} raised {out.get('ename')}: {out.get('evalue')}")
            if cell.get("execution_count") is None and "".join(cell.get("source", "")).strip():
                found.append(f"cell {i} never ran (Run All stopped before it)")
        return found


def _wait(predicate, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Lab:
    """One browser page on one JupyterLab server, reused for every notebook."""

    def __init__(self, page: Page, server, screenshot_dir: Path):
        self.page, self.server, self.screenshot_dir = page, server, Path(screenshot_dir)
        self.timings: list[tuple] = []  # (notebook, open s, run-all s, slowest cells)
        self.started: dict[str, tuple[float, float]] = {}  # notebook -> (asked to open, Run All clicked)
        self.kernel_cpu: dict[str, float | None] = {}  # notebook -> its kernel's CPU seconds

    # ----- kernel and notebook state -------------------------------------------------------
    def kernel_status(self) -> str:
        loc = self.page.locator(KERNEL_STATUS)
        return loc.first.inner_text().strip() if loc.count() else ""

    def wait_kernel_idle(self, timeout: float = 90) -> None:
        """Wait for the status bar to say '<kernel> | Idle' (JupyterLab ignores Run All before that)."""
        _wait(lambda: re.search(r"^(?!No Kernel).+\| Idle$", self.kernel_status()), timeout,
              f"the kernel to be idle (status bar says {self.kernel_status()!r})")

    def prompts(self) -> list[str]:
        return self.page.locator(f"{NOTEBOOK} .jp-CodeCell .jp-InputPrompt").all_inner_texts()

    def tab(self, rel_path: str) -> Locator:
        """The notebook's tab in the main dock area (its tooltip has a line 'Path: <rel_path>')."""
        tabs = self.page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab")
        titles = tabs.evaluate_all("els => els.map(e => e.title)")
        for i, title in enumerate(titles):
            if f"Path: {rel_path}" in title.splitlines():
                return tabs.nth(i)
        return self.page.locator("#no-such-tab")

    def open(self, rel_path: str, timeout: float = 90) -> None:
        """Open a notebook: the first one by its URL, later ones with File → Open from Path…"""
        if not self.page.locator("#jp-MainMenu").count():
            self.page.goto(self.server.lab_url(rel_path))
            self.page.wait_for_selector(f"{NOTEBOOK} .jp-Cell", timeout=timeout * 1000)
            open_sidebar = self.page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
            if open_sidebar.count():
                open_sidebar.first.click()  # fold the file browser away: more room for the notebook
        else:
            self.menu("File", "Open from Path…")
            box = self.page.locator(".jp-Dialog input").first
            box.fill(rel_path)
            box.press("Enter")
        _wait(lambda: self.tab(rel_path).count() and "lm-mod-current" in (
            self.tab(rel_path).first.get_attribute("class") or ""), timeout, f"a tab for {rel_path}")
        self.page.wait_for_selector(f"{NOTEBOOK} .jp-Cell", timeout=timeout * 1000)
        self.wait_kernel_idle(timeout)

    def activate(self, rel_path: str) -> None:
        tab = self.tab(rel_path)
        if not tab.count():
            raise LabError(f"{rel_path} has no open tab")
        tab.first.click()
        _wait(lambda: "lm-mod-current" in (tab.first.get_attribute("class") or ""), 10, f"{rel_path}'s tab")

    def menu(self, top: str, item: str) -> None:
        self.page.locator("#jp-MainMenu .lm-MenuBar-item", has_text=re.compile(f"^{top}$")).click()
        self.page.locator(".lm-Menu-item", has_text=item).first.click()

    def start_run_all(self) -> None:
        """Run → Run All Cells in the active notebook (its kernel must be idle: see wait_kernel_idle)."""
        self.menu("Run", "Run All Cells")
        if self.prompts():
            _wait(lambda: any("*" in p or re.search(r"\d", p) for p in self.prompts()), 30,
                  "Run All to start (no cell got a [*] or a number)")

    def wait_run_finished(self, timeout: float) -> None:
        """Wait until no cell of the active notebook is queued or running and its kernel is idle."""
        stable_since = [None]

        def finished():
            done = not any("*" in p for p in self.prompts()) and self.kernel_status().endswith("| Idle")
            if not done:
                stable_since[0] = None
                return False
            stable_since[0] = stable_since[0] or time.monotonic()
            return time.monotonic() - stable_since[0] > 1.0

        _wait(finished, timeout, "every cell to finish (some cell still shows [*])")

    def save(self, rel_path: str, timeout: float = 30) -> dict:
        """Ctrl+S, wait for the tab to lose its unsaved mark, return the saved notebook JSON."""
        self.page.locator(NOTEBOOK).first.click(position={"x": 5, "y": 5})
        self.page.keyboard.press("Escape")
        self.page.keyboard.press("Control+s")
        tab = self.page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")
        dialog = self.page.locator(".jp-Dialog")

        def saved():
            if dialog.count():
                raise LabError(f"saving {rel_path} opened a dialog: {dialog.first.inner_text()!r}")
            return "jp-mod-dirty" not in (tab.first.get_attribute("class") or "")

        _wait(saved, timeout, "the notebook to be saved")
        path = self.server.root / rel_path
        return _wait(lambda: _read_json(path), timeout, f"{rel_path} to be written")

    def screenshot(self, name: str) -> Path:
        """A picture of the whole notebook: the viewport is made as tall as the notebook for the shot."""
        self.screenshot_dir.mkdir(parents=True, exist_ok=True)
        path = self.screenshot_dir / f"{name}.png"
        size = self.page.viewport_size
        height = self.page.locator(NOTEBOOK).first.evaluate(
            "el => { const all = [el, ...el.querySelectorAll('.jp-WindowedPanel-outer, .jp-WindowedPanel-inner')];"
            " all.forEach(e => { e.scrollTop = 0; }); return Math.max(...all.map(e => e.scrollHeight)); }")
        self.page.set_viewport_size({"width": size["width"], "height": min(max(size["height"], height + 200), 12000)})
        try:
            self.page.wait_for_timeout(300)
            self.page.screenshot(path=str(path))
        finally:
            self.page.set_viewport_size(size)
        return path

    def start(self, rel_path: str) -> None:
        """Open the notebook, wait for its kernel to be idle, and start Run All (without waiting for it)."""
        t0 = time.monotonic()
        try:
            self.open(rel_path)
            t1 = time.monotonic()
            self.start_run_all()
        except Exception:
            self.screenshot(f"FAILED-{_shot_name(rel_path)}")
            raise
        self.started[rel_path] = (t0, t1)

    def finish(self, rel_path: str, timeout: float = 600) -> NotebookRun:
        """Show the notebook, wait for its Run All to end, save it, screenshot it; return what happened."""
        self.activate(rel_path)
        try:
            self.wait_run_finished(timeout)
        except Exception:
            self.screenshot(f"FAILED-{_shot_name(rel_path)}")
            raise
        t0, t1 = self.started[rel_path]
        seconds = time.monotonic() - t1
        saved = self.save(rel_path)
        slow = NotebookRun(rel_path, seconds, saved).slowest_cells()
        self.timings.append((rel_path, t1 - t0, seconds, slow))
        classes = set(self.page.locator(NOTEBOOK).first.evaluate(
            "el => [...el.querySelectorAll('[class*=course-]')].flatMap(e => [...e.classList])"
            ".filter(c => c.startsWith('course-'))"))
        return NotebookRun(rel_path, seconds, saved, self.screenshot(_shot_name(rel_path)), classes)

    def close(self, rel_path: str | None = None) -> None:
        """End the notebook's kernel (all kernels when ``rel_path`` is None)."""
        self.kernel_cpu.update(self.server.shutdown_kernels(rel_path))

    # ----- editing and running single cells ------------------------------------------------
    def cell(self, index: int) -> Locator:
        """The notebook's cell number ``index`` (0-based, markdown cells counted)."""
        return self.page.locator(f"{NOTEBOOK} .jp-Cell").nth(index)

    def replace_cell_source(self, index: int, text: str) -> None:
        """Click into the cell's editor, select everything and paste ``text`` over it."""
        editor = self.cell(index).locator(".cm-content").first
        editor.scroll_into_view_if_needed()
        editor.click()
        self.page.keyboard.press("Control+a")
        self.page.keyboard.insert_text(text)  # like a paste: no auto-closed brackets or auto-indent

    def run_cells_from(self, index: int, count: int, timeout: float = 120) -> None:
        """Shift+Enter ``count`` times starting in cell ``index`` (which must be in edit mode or selected)."""
        for _ in range(count):
            self.page.keyboard.press("Shift+Enter")
        stable_since = [None]

        def finished():
            prompts = [self.cell(index + k).locator(".jp-InputPrompt").first.inner_text() for k in range(count)]
            done = all(re.search(r"\d", p) for p in prompts) and self.kernel_status().endswith("| Idle")
            stable_since[0] = (stable_since[0] or time.monotonic()) if done else None
            return done and time.monotonic() - stable_since[0] > 0.5

        _wait(finished, timeout, f"cells {index}..{index + count - 1} to run")

    def output_text(self, index: int) -> str:
        return "\n".join(self.cell(index).locator(".jp-OutputArea-output").all_inner_texts())

    # ----- widgets -------------------------------------------------------------------------
    def widgets(self, css_class: str) -> Locator:
        return self.page.locator(f"{NOTEBOOK} .{css_class}")

    def require_widgets(self, css_class: str, rel_path: str) -> list[Locator]:
        loc = self.widgets(css_class)
        if loc.count() == 0:
            raise LabError(f"{rel_path} shows no widget with class {css_class!r} after Run All: "
                           f"the lesson must display it (did its cell fail, or was the class not added?)")
        return [loc.nth(i) for i in range(loc.count())]


# nbgrader 0.9.6's lab extension adds an "Nbgrader" menu (Formgrader, Assignment List, Course List), a
# "Validate" button to the notebook toolbar and a "Nbgrader Create Assignment" side bar; its server extensions
# answer these pages.
NBGRADER_WORDS = re.compile(r"nbgrader|validate|create assignment|formgrader|course list|assignment list", re.I)
NBGRADER_PAGES = ["/formgrader", "/formgraders"]


def nbgrader_ui(page: Page) -> list[str]:
    """The nbgrader items JupyterLab shows: menu bar items, notebook toolbar items and side bar tabs."""
    texts = page.locator("#jp-MainMenu .lm-MenuBar-item").all_inner_texts()
    texts += page.locator(".jp-NotebookPanel-toolbar .jp-Toolbar-item").evaluate_all(
        "els => els.map(e => [e.innerText, ...[...e.querySelectorAll('[title]')].map(t => t.title)].join(' '))")
    texts += page.locator(".jp-SideBar .lm-TabBar-tab").evaluate_all("els => els.map(e => e.title)")
    return [" ".join(t.split()) for t in texts if NBGRADER_WORDS.search(t)]


def http_status(server, path: str) -> int:
    """The HTTP status the server answers for ``path`` (with the token)."""
    import urllib.error

    try:
        server.api("GET", path)
        return 200
    except urllib.error.HTTPError as exc:
        return exc.code
    except ValueError:  # an HTML page, not JSON: it was served
        return 200


def _shot_name(rel_path: str) -> str:
    return Path(rel_path).with_suffix("").as_posix().replace("/", "__")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def settled_text(loc: Locator, lab: Lab, timeout: float = 60, quiet: float = 1.0) -> str:
    """The element's text once it and the kernel have stopped changing for ``quiet`` seconds."""
    last, since = [None], [time.monotonic()]

    def stable():
        text = loc.inner_text()
        busy = not lab.kernel_status().endswith("| Idle")
        if text != last[0] or busy:
            last[0], since[0] = text, time.monotonic()
            return False
        return time.monotonic() - since[0] >= quiet

    _wait(stable, timeout, "a widget's text to settle")
    return last[0]


def wait_text_change(loc: Locator, lab: Lab, before: str, timeout: float, what: str) -> str:
    _wait(lambda: loc.inner_text() != before, timeout, what)
    return settled_text(loc, lab, timeout)


# ----- the course's widgets ----------------------------------------------------------------------
def check_quiz(lab: Lab, box: Locator) -> str:
    """Reveal the answer, pick a wrong option and Check (expect ✗), then the right one (expect ✓)."""
    from course_utils.quizzes import RIGHT, WRONG

    box.scroll_into_view_if_needed()
    feedback = box.locator(".widget-html-content").last
    labels = [t.strip() for t in box.locator(".widget-radio-box label").all_inner_texts()]
    if len(labels) < 2:
        raise LabError(f"a quiz shows {len(labels)} radio options; expected at least 2")
    box.get_by_role("button", name="Show explanation").click()
    revealed = _wait(lambda: feedback.inner_text().strip(), 20, "the quiz's explanation to appear")
    right = [i for i, lab_ in enumerate(labels) if revealed.startswith(f"Answer: {lab_}.")]
    if not right:
        raise LabError(f"the explanation {revealed!r} names none of the options {labels}")
    right_i = max(right, key=lambda i: len(labels[i]))
    wrong_i = next(i for i in range(len(labels)) if i != right_i)
    radios = box.locator(".widget-radio-box input[type=radio]")
    for index, expected in ((wrong_i, WRONG), (right_i, RIGHT)):
        radios.nth(index).check()
        box.get_by_role("button", name="Check").click()
        _wait(lambda expected=expected: feedback.inner_text().strip().startswith(expected), 20,
              f"{expected!r} after checking option {labels[index]!r} (shown: {feedback.inner_text()!r})")
    return labels[right_i]


def move_slider(lab: Lab, control: Locator) -> None:
    """Drag the control's slider handle to the right, like a learner with a mouse."""
    handle = control.locator(".noUi-handle").first
    track = control.locator(".noUi-target, .slider-container").first
    handle.scroll_into_view_if_needed()
    hb, tb = handle.bounding_box(), track.bounding_box()
    if not hb or not tb:
        raise LabError("the slider is not visible")
    x, y = hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2
    target = tb["x"] + tb["width"] * 0.85 if x < tb["x"] + tb["width"] * 0.6 else tb["x"] + tb["width"] * 0.15
    lab.page.mouse.move(x, y)
    lab.page.mouse.down()
    lab.page.mouse.move(target, y, steps=8)
    lab.page.mouse.up()
