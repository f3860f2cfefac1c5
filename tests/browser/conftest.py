"""Fixtures for the browser tests: one JupyterLab server and one headless Chromium page per session.

The server is JupyterLab as ``make lab`` starts it for a learner (its environment and arguments, the
course's settings from scripts/lab_settings.py and its workspace), plus the tests' own user settings
(every cell in the DOM, cell timings, no autosave). Only the instructor test starts a second server, as
``make lab-instructor`` does.

The browser is the system Chromium (Debian package ``chromium``) driven by Playwright; nothing is
downloaded. In CI (``CI=true``) a missing browser fails the run; elsewhere the browser tests skip.
The browser tests are all in test_browser.py, so under ``pytest -n 2 --dist loadfile`` they share one
worker, one server and one page.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from lab_page import Lab  # noqa: E402
from lab_server import LAB_SETTINGS, LabServer, copy_course, make_lab_command  # noqa: E402
from script_loader import load_script  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-output" / "browser"
# Keep Chromium off the network: only 127.0.0.1 resolves, and no background services run.
CHROMIUM_ARGS = [
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--disable-gpu", "--no-default-browser-check",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str | None:
    """COURSE_CHROMIUM when set (only it), else Debian's /usr/bin/chromium or a chromium on PATH."""
    if os.environ.get("COURSE_CHROMIUM"):
        cands = [os.environ["COURSE_CHROMIUM"]]
    else:
        cands = ["/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")]
    for cand in cands:
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def _unavailable(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives JupyterLab in headless Chromium (tests/browser)")


def pytest_collection_modifyitems(config, items):
    """Group the browser tests by notebook, so each notebook is opened and run once."""
    here = str(Path(__file__).parent)
    browser = [it for it in items if str(it.path).startswith(here)]
    if not browser:
        return
    for it in browser:
        it.add_marker(pytest.mark.browser)
    order = {id(it): n for n, it in enumerate(items)}

    def key(it):
        nb = getattr(it, "callspec", None) and it.callspec.params.get("nb")
        return (str(nb or ""), order[id(it)])

    first = min(order[id(it)] for it in browser)
    rest = [it for it in items if str(it.path).startswith(here) is False]
    items[:] = rest[:first] + sorted(browser, key=key) + rest[first:]


@pytest.fixture(scope="session")
def chromium_executable():
    path = chromium_path()
    if path is None:
        _unavailable("Chromium not found: install it with `apt-get install -y chromium` (or set COURSE_CHROMIUM)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("the playwright package is missing: pip install -e '.[test]'")
    return path


@pytest.fixture(scope="session")
def course_copy(tmp_path_factory):
    """A temporary copy of notebooks/ and exercises/: the browser runs and saves only this copy."""
    return copy_course(REPO, tmp_path_factory.mktemp("course"))


def course_home(home: Path) -> list[str]:
    """Set up ``home`` as ``make setup`` sets up a learner's machine; returns the JupyterLab arguments that read it.

    The course's settings overrides (written by scripts/lab_settings.py into the venv; here into the
    server's own folder, so this checkout's settings are tested) and its workspace, and the per-user
    kernel ``peft-course`` that earlier versions of the course registered (``make lab`` must not offer it)."""
    lab_settings = load_script("lab_settings")
    lab_settings.install(home / "app-settings" / "overrides.json")
    lab_settings.install_workspace(home / "workspaces")
    kernel = home / "data" / "kernels" / "peft-course" / "kernel.json"
    kernel.parent.mkdir(parents=True)
    kernel.write_text(json.dumps({"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                                  "display_name": "PEFT adapter course (.venv)", "language": "python"}))
    return [f"--LabApp.app_settings_dir={home / 'app-settings'}"]


def start_lab(target: str, root: Path, home: Path, user_settings: dict) -> LabServer:
    """JupyterLab as ``make <target>`` starts it, serving ``root``, with ``home`` for every Jupyter folder."""
    env, args = make_lab_command(REPO, target)
    return LabServer(root, home, lab_args=args + course_home(home), env=env, user_settings=user_settings)


@pytest.fixture(scope="session")
def lab_server(course_copy, tmp_path_factory, chromium_executable):
    """The learner's JupyterLab (``make lab``), for every test but the instructor's."""
    server = start_lab("lab", course_copy, tmp_path_factory.mktemp("jupyter-home"), LAB_SETTINGS)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def instructor_server(course_copy, tmp_path_factory, chromium_executable):
    """The instructor's JupyterLab (``make lab-instructor``): started only for the test that needs it."""
    server = start_lab("lab-instructor", course_copy, tmp_path_factory.mktemp("instructor-home"), {})
    yield server
    server.stop()


@pytest.fixture(scope="session")
def page(chromium_executable, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    args = CHROMIUM_ARGS + (["--no-sandbox"] if os.geteuid() == 0 else [])
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=chromium_executable,
            headless=True, args=args, viewport={"width": 1280, "height": 900}, accept_downloads=False)
        try:
            pg = context.pages[0] if context.pages else context.new_page()
            pg.set_default_timeout(30_000)
            # Accept "leave this page?" prompts, so opening the next notebook is never blocked.
            pg.on("dialog", lambda dialog: dialog.accept())
            yield pg
        finally:
            context.close()


@pytest.fixture(scope="session")
def lab(page, lab_server):
    for old in SCREENSHOTS.glob("*.png"):  # pictures of an earlier run must not pass for this one's
        old.unlink()
    lab = Lab(page, lab_server, SCREENSHOTS)
    yield lab
    lab.close()
    if lab.timings:
        cpu = {nb: f"{s:.1f} s" if s is not None else "?" for nb, s in lab.kernel_cpu.items()}
        lines = [f"{nb}: opened with an idle kernel in {o:.1f} s, Run All done {r:.1f} s later, kernel CPU "
                 f"{cpu.get(nb, '?')}; slowest cells: " + ", ".join(f"#{i} {t:.1f} s" for i, t in slow)
                 for nb, o, r, slow in lab.timings]
        (SCREENSHOTS / "timings.txt").write_text("\n".join(lines) + "\n")
