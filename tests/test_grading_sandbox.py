"""The sandbox of one graded submission: what bubblewrap allows its kernel, and the line said without it."""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest
from jupyter_client import KernelManager

from course_utils.grading import sandbox as sandbox_module
from course_utils.grading.checks import CHECKS
from course_utils.grading.grader import grade_path, prepare
from course_utils.grading.sandbox import Sandbox, make_sandbox, required_in_ci
from course_utils.maintenance.repo import REPO

HAS_BWRAP = make_sandbox().bwrap is not None
needs_bwrap = pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap is not installed (.ci/run installs it)")

EX01_MAX = sum(c.points for gid, c in CHECKS.items() if gid.startswith("ex01_"))


def test_without_bwrap_one_line_names_every_missing_protection():
    line = Sandbox(None, 2**31).warning()
    assert line.count("\n") == 0 and "isolation none" in line
    for protection in ("read-only course", "private /tmp", "no network", "processes ended"):
        assert protection in line
    assert "memory cap" in Sandbox(None, 0).warning()


def test_ci_requires_bwrap(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert "bubblewrap" in required_in_ci(Sandbox(None, 2**31))
    assert required_in_ci(Sandbox("/usr/bin/bwrap", 2**31)) is None
    monkeypatch.delenv("CI")
    assert required_in_ci(Sandbox(None, 2**31)) is None


def test_kernel_command_unshares_network_and_pids(tmp_path):
    argv = Sandbox("/usr/bin/bwrap", 2**30).kernel_argv(tmp_path, (Path("/tmp/spec"),))
    for flag in ("--unshare-net", "--unshare-pid", "--die-with-parent", "--new-session"):
        assert flag in argv
    assert argv[argv.index("--tmpfs") + 1] == "/tmp"
    assert ["--bind", str(tmp_path), str(tmp_path)] == argv[argv.index("--bind"):argv.index("--bind") + 3]
    assert ["--ro-bind", "/tmp/spec", "/tmp/spec"] == argv[argv.index("/tmp/spec") - 1:argv.index("/tmp/spec") + 2]
    assert f"--as={2**30}" in argv


def _run_in_sandbox(code: str, memory_gib: float = 1.0) -> dict:
    """Run ``code`` in a sandboxed kernel; the execute reply's content."""
    sandbox = make_sandbox(memory_gib)
    with tempfile.TemporaryDirectory() as work, tempfile.TemporaryDirectory() as spec:
        km = sandbox.kernel_manager(Path(work), Path(spec), manager=KernelManager)
        km.start_kernel(cwd=work)
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            msg_id = kc.execute(code, user_expressions={"out": "out"})
            while True:
                reply = kc.get_shell_msg(timeout=60)
                if reply["parent_header"].get("msg_id") == msg_id:
                    return reply["content"]
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)


@needs_bwrap
def test_kernel_writes_only_its_folder_has_no_network_and_a_memory_cap():
    code = (
        "import os, socket, subprocess, pathlib\n"
        "out = []\n"
        f"for target in ['/root/sandbox-probe', {str(REPO / 'sandbox-probe')!r}]:\n"
        "    try:\n"
        "        pathlib.Path(target).write_text('x'); out.append('wrote')\n"
        "    except OSError:\n"
        "        out.append('blocked')\n"
        "pathlib.Path('mine.txt').write_text('x'); out.append('own folder ok')\n"
        "out.append(sorted(os.listdir('/tmp')) == [os.path.basename(os.getcwd())] or os.listdir('/tmp'))\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 80), timeout=2); out.append('network')\n"
        "except OSError:\n"
        "    out.append('no network')\n"
        "try:\n"
        "    bytearray(3 * 2**30); out.append('allocated 3 GiB')\n"
        "except MemoryError:\n"
        "    out.append('memory capped')\n"
        "subprocess.Popen(['sleep', '6151.5'], start_new_session=True)\n"
        "out.append(len([p for p in os.listdir('/proc') if p.isdigit()]) < 10)\n")
    reply = _run_in_sandbox(code)
    assert reply["status"] == "ok", reply
    out = reply["user_expressions"]["out"]["data"]["text/plain"]
    assert out.count("blocked") == 2 and "wrote" not in out and "own folder ok" in out
    assert "no network" in out and "memory capped" in out and out.endswith("True]"), out
    left = subprocess.run(["pgrep", "-f", "sleep 6151.5"], check=False, capture_output=True, text=True)
    assert left.stdout == "", "a detached process outlived its sandboxed kernel"


def test_without_bwrap_the_grader_still_grades_and_names_isolation_none(tmp_path):
    grading = prepare(tmp_path, sandbox=Sandbox(None, 2**32))
    result = grade_path(REPO / "exercises" / "solutions" / "01_save_adapter.ipynb", grading)
    assert (result.score, result.max_score, result.isolation) == (EX01_MAX, EX01_MAX, "none"), result


def test_a_checkout_under_tmp_is_bound_back_read_only(tmp_path, monkeypatch):
    """CI may clone the course under /tmp: the private /tmp must not hide the interpreter and the course."""
    venv = tmp_path / "clone" / ".venv"
    venv.mkdir(parents=True)
    monkeypatch.setattr(sandbox_module.sys, "prefix", str(venv))
    argv = Sandbox(bwrap="/usr/bin/bwrap", memory_bytes=0).kernel_argv(tmp_path / "work")
    binds = [argv[i + 1] for i, a in enumerate(argv) if a == "--ro-bind"]
    assert str(venv.resolve()) in binds or any(venv.resolve().is_relative_to(b) for b in binds)
    assert argv.index("--tmpfs") < argv.index("--ro-bind", argv.index("--tmpfs"))  # bound after /tmp is emptied
