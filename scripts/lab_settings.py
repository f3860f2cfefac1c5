#!/usr/bin/env python
"""Install the course's JupyterLab settings and its ``peft-course`` workspace (what ``make lab`` opens).

Run by ``scripts/ensure_venv.sh`` with the venv's python. The settings, in this venv's
``share/jupyter/lab/settings/overrides.json``, make the first minutes of ``make lab`` quiet and clear: no
news or update pop-up (JupyterLab asks whether to fetch news on first start), Markdown files (the start
page ``notebooks/START_HERE.md``) open rendered, the file browser gives the lesson names its whole width,
and long code lines wrap (the course allows 130 characters), so no code cell is cut off beside the file
browser. Only the course's keys are written: other overrides already in the file are kept, and the file is
rewritten only when a value differs.

The workspace ``peft-course`` (in the user's JupyterLab workspaces folder, where ``jupyter lab workspaces
import`` puts it) opens the file browser on ``notebooks/``, narrow (a fifth of the window), yet wide enough
for every lesson's number and topic (only the ``.ipynb`` of the longest may be cut). It is
written only when missing: once the learner has rearranged it, their layout is kept.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from jupyter_core.paths import jupyter_config_dir

COURSE_SETTINGS = {
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/docmanager-extension:plugin": {"defaultViewers": {"markdown": "Markdown Preview"}},
    "@jupyterlab/filebrowser-extension:browser": {"showLastModifiedColumn": False},
    "@jupyterlab/notebook-extension:tracker": {"codeCellConfig": {"lineNumbers": False, "lineWrap": True}},
}

WORKSPACE = "peft-course"
# Bumped when the layout below changes, so an older course layout is replaced (a learner's own is kept).
LAYOUT_VERSION = 3
# The left sidebar (file browser on notebooks/) open and a fifth of the window wide (250 px of 1280: every
# lesson's number and topic shows, and the notebook keeps the rest); no document: the URL make lab opens adds
# the start page. Version 2 gave the sidebar 36%, which left code cells cut off on a 1280-pixel screen.
WORKSPACE_DATA = {
    "layout-restorer:data": {
        "main": {"dock": None},
        "left": {"collapsed": False, "visible": True, "current": "filebrowser",
                 "widgets": ["filebrowser", "running-sessions", "@jupyterlab/toc:plugin", "extensionmanager.main-view"]},
        "right": {"collapsed": True, "visible": True, "widgets": ["jp-property-inspector", "debugger-sidebar"]},
        "relativeSizes": [0.2, 0.8, 0],
    },
    "file-browser-filebrowser:cwd": {"path": "notebooks"},
}


def overrides_path(prefix: str = sys.prefix) -> Path:
    """Where JupyterLab reads the overrides of the environment at ``prefix``."""
    return Path(prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"


def merged(current: dict) -> dict:
    """``current`` with the course's values set, plugin by plugin and key by key."""
    out = {plugin: dict(values) for plugin, values in current.items()}
    for plugin, values in COURSE_SETTINGS.items():
        out.setdefault(plugin, {}).update(values)
    return out


def install(path: Path) -> bool:
    """Write the course's settings into ``path``; True if the file changed."""
    current = {}
    if path.exists():
        try:
            current = json.loads(path.read_text())
        except ValueError as exc:
            raise SystemExit(f"setup: {path} is not valid JSON ({exc}): fix or delete it, then run make setup again") from None
        if not isinstance(current, dict):
            raise SystemExit(f"setup: {path} must hold a JSON object: fix or delete it, then run make setup again")
    new = merged(current)
    if new == current:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(new, indent=2) + "\n")
    tmp.replace(path)
    return True


def workspaces_dir() -> Path:
    """JupyterLab's workspaces folder: jupyterlab.commands.get_workspaces_dir's rule (importing it takes 1.5 s)."""
    return Path(os.environ.get("JUPYTERLAB_WORKSPACES_DIR") or Path(jupyter_config_dir()) / "lab" / "workspaces")


def has_workspace(folder: Path, name: str = WORKSPACE) -> bool:
    """True if a workspace file in ``folder`` has the id ``name`` and is not an older course layout (an
    unreadable file counts as another one)."""
    for path in folder.glob("*.jupyterlab-workspace"):
        try:
            metadata = json.loads(path.read_text())["metadata"]
            if metadata["id"] == name:
                version = metadata.get("course_layout")
                if version is None:  # the learner's own layout, or the first (unversioned) course layout
                    return not _is_old_course_layout(path)
                return version >= LAYOUT_VERSION
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return False


def _is_old_course_layout(path: Path) -> bool:
    """The first course layout carried no version: recognise it by its exact sidebar split."""
    data = json.loads(path.read_text())
    meta = data.get("metadata", {})
    sizes = data.get("data", {}).get("layout-restorer:data", {}).get("relativeSizes")
    return "course_layout" not in meta and sizes == [0.26, 0.74, 0]


def install_workspace(folder: Path) -> bool:
    """Save the course's workspace into ``folder`` unless one of that name is there; True if saved."""
    if has_workspace(folder):
        return False
    # Imported here: jupyterlab_server takes 1.4 s to import, and is needed only the first time.
    from jupyterlab_server.workspaces_handler import WorkspacesManager

    metadata = {"id": WORKSPACE, "course_layout": LAYOUT_VERSION}
    WorkspacesManager(folder).save(WORKSPACE, json.dumps({"data": WORKSPACE_DATA, "metadata": metadata}))
    return True


def main() -> int:
    path = overrides_path()
    if install(path):
        print(f"setup: JupyterLab settings written to {path}")
    workspaces = workspaces_dir()
    try:
        if install_workspace(workspaces):
            print(f"setup: JupyterLab workspace '{WORKSPACE}' written to {workspaces}")
    except OSError as exc:  # a read-only home: make lab still works, in JupyterLab's default layout
        print(f"setup: could not write the JupyterLab workspace '{WORKSPACE}' to {workspaces} ({exc}); "
              "make lab will use the default layout")
    return 0


if __name__ == "__main__":
    sys.exit(main())
