"""scripts/lab_settings.py: the settings and workspace `make lab` opens with, installed without clobbering."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from jupyterlab.commands import get_workspaces_dir
from jupyterlab_server.workspaces_handler import WorkspacesManager
from script_loader import load_script

ls = load_script("lab_settings")
SCHEMAS = Path(sys.prefix) / "share" / "jupyter" / "lab" / "schemas"


def test_merge_keeps_other_overrides_and_sets_the_course_values():
    mine = {"@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"},
            "@jupyterlab/apputils-extension:notification": {"fetchNews": "true", "doNotDisturbMode": True}}
    out = ls.merged(mine)
    assert out["@jupyterlab/apputils-extension:themes"] == {"theme": "JupyterLab Dark"}
    assert out["@jupyterlab/apputils-extension:notification"] == {
        "fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True}
    assert mine["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "true"  # input untouched


def test_install_is_idempotent(tmp_path):
    path = tmp_path / "settings" / "overrides.json"
    assert ls.install(path) is True
    first = path.read_text()
    assert json.loads(first) == ls.COURSE_SETTINGS
    assert ls.install(path) is False
    assert path.read_text() == first


@pytest.mark.parametrize("text, match", [("{not json", "is not valid JSON"), ("[1, 2]", "must hold a JSON object")])
def test_a_broken_overrides_file_is_one_clear_error_and_kept(tmp_path, text, match):
    path = tmp_path / "overrides.json"
    path.write_text(text)
    with pytest.raises(SystemExit, match=match):
        ls.install(path)
    assert path.read_text() == text


@pytest.mark.parametrize("plugin", sorted(ls.COURSE_SETTINGS))
def test_every_setting_exists_in_the_installed_jupyterlab(plugin):
    """A setting JupyterLab renamed or dropped would be ignored silently: check it against the schema."""
    package, name = plugin.split(":")
    schema = json.loads((SCHEMAS / package / f"{name}.json").read_text())
    for key, value in ls.COURSE_SETTINGS[plugin].items():
        assert key in schema["properties"], f"{plugin} has no setting {key!r} in this JupyterLab"
        prop = schema["properties"][key]
        allowed = [o["const"] for o in prop.get("oneOf", []) if "const" in o] or prop.get("enum")
        if allowed:
            assert value in allowed, f"{plugin}.{key}={value!r} is not one of {allowed}"
        kind = {"string": str, "boolean": bool, "object": dict}.get(prop.get("type"))
        if kind:
            assert isinstance(value, kind), f"{plugin}.{key} must be a {prop['type']}"


def test_workspace_written_once_and_readable_by_jupyterlab(tmp_path):
    assert ls.has_workspace(tmp_path) is False
    assert ls.install_workspace(tmp_path) is True
    loaded = WorkspacesManager(tmp_path).load(ls.WORKSPACE)
    assert loaded["data"] == ls.WORKSPACE_DATA
    assert loaded["metadata"]["id"] == ls.WORKSPACE
    # The learner's own layout is kept.
    mine = {"data": {"file-browser-filebrowser:cwd": {"path": "exercises"}}, "metadata": {"id": ls.WORKSPACE}}
    WorkspacesManager(tmp_path).save(ls.WORKSPACE, json.dumps(mine))
    assert ls.install_workspace(tmp_path) is False
    assert WorkspacesManager(tmp_path).load(ls.WORKSPACE)["data"] == mine["data"]


def test_workspaces_dir_follows_jupyterlab(monkeypatch, tmp_path):
    assert ls.workspaces_dir() == Path(get_workspaces_dir())
    monkeypatch.setenv("JUPYTERLAB_WORKSPACES_DIR", str(tmp_path))
    assert ls.workspaces_dir() == Path(get_workspaces_dir()) == tmp_path


def test_an_older_course_layout_is_replaced_and_a_learners_is_kept(tmp_path):
    old = {"data": {**ls.WORKSPACE_DATA, "layout-restorer:data": {
        **ls.WORKSPACE_DATA["layout-restorer:data"], "relativeSizes": [0.26, 0.74, 0]}}, "metadata": {"id": ls.WORKSPACE}}
    WorkspacesManager(tmp_path).save(ls.WORKSPACE, json.dumps(old))
    assert ls.install_workspace(tmp_path) is True  # the first, unversioned course layout: replaced
    saved = WorkspacesManager(tmp_path).load(ls.WORKSPACE)
    assert saved["data"]["layout-restorer:data"]["relativeSizes"] == ls.WORKSPACE_DATA["layout-restorer:data"]["relativeSizes"]
    mine = {"data": {**ls.WORKSPACE_DATA, "layout-restorer:data": {
        **ls.WORKSPACE_DATA["layout-restorer:data"], "relativeSizes": [0.5, 0.5, 0]}}, "metadata": {"id": ls.WORKSPACE}}
    WorkspacesManager(tmp_path).save(ls.WORKSPACE, json.dumps(mine))
    assert ls.install_workspace(tmp_path) is False  # a layout the learner arranged is theirs


def test_the_previous_course_layout_is_replaced(tmp_path):
    """Layout 2 gave the file browser 36% of the window: a learner who ran setup then gets the narrow one."""
    old = {"data": {**ls.WORKSPACE_DATA, "layout-restorer:data": {
        **ls.WORKSPACE_DATA["layout-restorer:data"], "relativeSizes": [0.36, 0.64, 0]}},
        "metadata": {"id": ls.WORKSPACE, "course_layout": 2}}
    WorkspacesManager(tmp_path).save(ls.WORKSPACE, json.dumps(old))
    assert ls.LAYOUT_VERSION > 2
    assert ls.install_workspace(tmp_path) is True
    saved = WorkspacesManager(tmp_path).load(ls.WORKSPACE)
    assert saved["metadata"]["course_layout"] == ls.LAYOUT_VERSION
    assert saved["data"]["layout-restorer:data"]["relativeSizes"] == [0.2, 0.8, 0]


def test_the_file_browser_is_narrow_and_code_wraps():
    """At most a fifth of the window for the file browser (tests/browser measures it in Chromium), and long
    code lines wrap instead of being cut off at the notebook's right edge."""
    left, main, right = ls.WORKSPACE_DATA["layout-restorer:data"]["relativeSizes"]
    assert left <= 0.2 and main >= 0.8 and right == 0
    assert ls.COURSE_SETTINGS["@jupyterlab/notebook-extension:tracker"]["codeCellConfig"]["lineWrap"] is True


ROOT = Path(__file__).resolve().parents[1]
LEARNER = ROOT / "config" / "learner-lab"


def _make_lab_line(target: str) -> str:
    dry = subprocess.run(["make", "-n", target, "VENV=/nonexistent-venv"], cwd=ROOT, capture_output=True, text=True)
    return next(line for line in dry.stdout.splitlines() if "/jupyter lab " in line)


def test_learners_lab_reads_the_config_that_hides_nbgrader_and_the_instructors_does_not():
    assert f'JUPYTER_CONFIG_PATH="{LEARNER}"' in _make_lab_line("lab")
    assert "JUPYTER_CONFIG_PATH" not in _make_lab_line("lab-instructor")
    assert _make_lab_line("lab").split("/jupyter lab ")[1] == _make_lab_line("lab-instructor").split("/jupyter lab ")[1]


def test_learner_config_turns_off_every_nbgrader_extension_setup_installs():
    """Every nbgrader server extension the venv enables is off for learners, and so is its lab extension."""
    enabled = json.loads((Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.d" / "nbgrader.json").read_text())
    off = json.loads((LEARNER / "jupyter_server_config.json").read_text())["ServerApp"]["jpserver_extensions"]
    assert set(enabled["ServerApp"]["jpserver_extensions"]) == set(off) and not any(off.values())
    pages = json.loads((LEARNER / "labconfig" / "page_config.json").read_text())
    assert pages == {"disabledExtensions": {"@jupyter/nbgrader": True}}
    assert (Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "@jupyter" / "nbgrader" / "package.json").exists()
