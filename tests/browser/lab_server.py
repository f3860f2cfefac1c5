"""A throw-away JupyterLab server for the browser tests.

It serves a temporary copy of the course's folders, keeps every Jupyter folder (config, runtime, data,
settings, workspaces) in a temporary directory, starts with ``make lab``'s environment and arguments
(``make_lab_command``; conftest.py adds the course's settings and workspace) and the tests' user settings
(no cell windowing, cell timings, no autosave), and runs in its own process group so that the server and
all of its kernels can be ended together.
"""
from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from course_utils.maintenance.notebook_env import notebook_environ

# JupyterLab settings the tests need: every cell in the DOM (no virtual scrolling, so all outputs and
# widgets can be inspected), cell timings recorded, no autosave racing the tests' own save, and no
# news / update toasts over the notebook.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none", "recordTiming": True},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                         "checkForUpdates": False},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jupyter_executable() -> Path:
    """The ``jupyter`` next to the running Python (the course's .venv)."""
    exe = Path(sys.executable).parent / "jupyter"
    if not exe.exists():
        raise FileNotFoundError(f"{exe} not found: run the tests with the course's .venv/bin/python")
    return exe


class LabServer:
    """``jupyter lab`` on 127.0.0.1 with a token, serving ``root``; ``stop()`` ends its process group."""

    def __init__(self, root: Path, home: Path, timeout: float = 60.0, lab_args: list[str] | None = None,
                 env: dict[str, str] | None = None, user_settings: dict | None = None):
        """``lab_args``: start JupyterLab with these arguments (``make lab``'s) instead of the tests' news and
        update switches; ``env``: more environment variables (``make lab``'s); ``user_settings``: the user
        settings to write (default: LAB_SETTINGS without ``lab_args``, none with them)."""
        self.root, self.home = Path(root), Path(home)
        self.lab_args, self.extra_env = lab_args, dict(env or {})
        self.user_settings = user_settings if user_settings is not None else (LAB_SETTINGS if lab_args is None else {})
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.home / "jupyterlab.log"
        self.proc: subprocess.Popen | None = None
        self._start(timeout)

    def _start(self, timeout: float) -> None:
        dirs = {name: self.home / name for name in ("config", "runtime", "data", "settings", "workspaces", "ipython")}
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        for rel, values in self.user_settings.items():
            target = dirs["settings"] / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(values))
        env = dict(notebook_environ(), JUPYTER_CONFIG_DIR=str(dirs["config"]), JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
                   JUPYTER_DATA_DIR=str(dirs["data"]), IPYTHONDIR=str(dirs["ipython"]))
        for name in ("JUPYTER_PATH", "JUPYTER_CONFIG_PATH"):
            env.pop(name, None)
        env.update(self.extra_env)
        cmd = [str(jupyter_executable()), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
               "--port-retries=0", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={self.root}", f"--LabApp.user_settings_dir={dirs['settings']}",
               f"--LabApp.workspaces_dir={dirs['workspaces']}", "--ServerApp.open_browser=False"]
        if self.lab_args is None:
            cmd += ["--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        else:
            cmd += self.lab_args
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        log = self.log_path.open("wb")
        # Own session => own process group: the server and every kernel it starts are ended together.
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.api("GET", "/api/status")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"jupyter lab did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def api(self, method: str, path: str):
        """Call the server's REST API with the token; returns the decoded JSON (or None)."""
        req = urllib.request.Request(self.url + path, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    @property
    def workspaces_dir(self) -> Path:
        return self.home / "workspaces"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def lab_url(self, rel_path: str) -> str:
        return f"{self.url}/lab/tree/{rel_path}?token={self.token}&reset"

    def kernel_cpu_seconds(self, kernel_id: str) -> float | None:
        """CPU seconds (user + system) the kernel process has used so far, or None if not found."""
        import psutil

        for proc in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                if any(f"kernel-{kernel_id}.json" in arg for arg in proc.cmdline()):
                    t = proc.cpu_times()
                    return t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                continue
        return None

    def shutdown_kernels(self, rel_path: str | None = None) -> dict[str, float | None]:
        """End the kernel of the notebook ``rel_path`` (every kernel when None), freeing CPU and memory.

        Returns each ended notebook's kernel CPU seconds."""
        cpu = {}
        for session in self.api("GET", "/api/sessions") or []:
            if rel_path is not None and session.get("path") != rel_path:
                continue
            cpu[session.get("path")] = self.kernel_cpu_seconds(session["kernel"]["id"])
            try:
                self.api("DELETE", f"/api/sessions/{session['id']}")
            except urllib.error.HTTPError:
                pass
        return cpu

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """End the server's whole process group (server and kernels): TERM, then KILL after 5 s."""
        if self.proc is None:
            return
        try:
            pgid = os.getpgid(self.proc.pid)
        except ProcessLookupError:
            pgid = None
        if pgid is not None:
            try:
                os.killpg(pgid, signal.SIGTERM)
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                pass
            try:
                os.killpg(pgid, signal.SIGKILL)  # kernels that outlived the server
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=5)
        self.proc = None


def make_lab_command(repo: Path, target: str = "lab") -> tuple[dict[str, str], list[str]]:
    """The environment and the arguments ``make <target>`` gives ``jupyter lab`` (read with ``make -n``), less
    the root folder and ``--allow-root``, which LabServer sets for its copy of the course."""
    dry = subprocess.run(["make", "-n", target, "LAB_ARGS="], cwd=repo, capture_output=True, text=True, check=True)
    line = next(ln for ln in dry.stdout.replace("\\\n", " ").splitlines() if "/jupyter lab " in ln)
    words = shlex.split(line)
    start = next(i for i, word in enumerate(words) if word.endswith("/jupyter"))
    env = dict(word.split("=", 1) for word in words[:start])
    args = [a for a in words[start + 2:] if not a.startswith("--ServerApp.root_dir=") and a != "--allow-root"]
    return env, args


def copy_course(repo: Path, dest: Path, folders=("notebooks", "exercises")) -> Path:
    """Copy the course's notebook folders to ``dest`` (the repository's files are never touched)."""
    for name in folders:
        src = repo / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("saved", ".ipynb_checkpoints"))
    return dest
