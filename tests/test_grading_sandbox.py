"""The sandbox of one graded submission: its command lines, its one-line refusals, and attacks from a real kernel.

The attack tests start real sandboxed kernels (as root here and in CI: bwrap builds the sandbox, setpriv drops to
nobody). Without a working bwrap they skip, saying why, on a developer's machine and fail under ``CI=true``.
"""
from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from jupyter_client import KernelManager

from course_utils.grading import sandbox as sandbox_module
from course_utils.grading import sandbox_layout
from course_utils.grading.sandbox import (
    DROP_ROOT,
    KERNEL_UID_BASE,
    MEMORY_GIB,
    NAMESPACES,
    NOBODY,
    PROBE_CODE,
    SETPRIV_ARGS,
    USER_NAMESPACE,
    Limits,
    Sandbox,
    SandboxRefused,
    make_sandbox,
    required_in_ci,
    share_with_nobody,
)
from course_utils.maintenance.notebook_env import ENV
from course_utils.maintenance.repo import REPO

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BWRAP = "/usr/bin/bwrap"
PACKAGE = Path(sandbox_module.__file__).resolve().parents[1]
SECRET = "SANDBOX_TEST_SECRET"
IS_ROOT = os.geteuid() == 0


# ---------------------------------------------------------------- command lines, without running bwrap

def _binds(argv: list[str], how: str = "--ro-bind") -> list[str]:
    return [argv[i + 2] for i, arg in enumerate(argv) if arg == how]


def _root_argv(tmp_path: Path, mode: str = DROP_ROOT) -> tuple[list[str], Path, Path]:
    work, spec = tmp_path / "grade" / "work", tmp_path / "spec"
    work.mkdir(parents=True)
    spec.mkdir()
    return Sandbox(BWRAP, 2**30, mode).kernel_argv(work, (spec,)), work, spec


def test_root_mode_builds_a_minimal_read_only_root_and_drops_to_nobody(tmp_path):
    argv, work, spec = _root_argv(tmp_path)
    assert argv[0] == BWRAP and "--unshare-user" not in argv
    assert all(flag in argv for flag in NAMESPACES)
    assert "/" not in _binds(argv) and str(REPO) not in _binds(argv)
    assert {"/usr", sys.base_prefix, sys.prefix, str(PACKAGE), str(spec)} <= set(_binds(argv))
    assert not any(Path(b).is_relative_to(REPO / "exercises") or Path(b).is_relative_to(REPO / "tests")
                   for b in _binds(argv))
    assert _binds(argv, "--bind") == [str(work)] and argv[argv.index("--chdir") + 1] == str(work)
    prlimit, setpriv = argv.index(shutil.which("prlimit")), argv.index(shutil.which("setpriv"))
    assert prlimit < setpriv
    assert argv[setpriv + 1:] == [f"--reuid={NOBODY}", *SETPRIV_ARGS, "--", sys.executable, "-m", "ipykernel_launcher", "-f",
                                  "{connection_file}"]
    for name in ("nproc", "as", "cpu", "fsize", "nofile"):
        assert any(a.startswith(f"--{name}=") for a in argv[prlimit:setpriv]), name
    assert f"--as={2**30}" in argv


def test_every_ancestor_of_a_bind_is_made_enterable_before_the_bind(tmp_path):
    """bwrap makes missing mount points 0700: nobody could not reach /root/.pyenv or the grader's /tmp folders."""
    argv, work, _ = _root_argv(tmp_path)
    made = {argv[i + 3]: i for i, a in enumerate(argv[:-3]) if argv[i:i + 3] == ["--perms", "0755", "--dir"]}
    for how in ("--ro-bind", "--bind"):
        for i in (i for i, a in enumerate(argv) if a == how and argv[i + 2].startswith(("/root", "/tmp/", "/work"))):
            for parent in Path(argv[i + 2]).parents:
                if str(parent) not in ("/", "/tmp") and not any(parent.is_relative_to(b) for b in _binds(argv)):
                    assert made.get(str(parent), len(argv)) < i, (parent, argv[i + 2])
    assert argv.index("--tmpfs") < min(i for i, a in enumerate(argv) if a == str(work))


def test_user_namespace_mode_maps_the_caller_to_nobody_without_capabilities(tmp_path):
    argv, work, _ = _root_argv(tmp_path, USER_NAMESPACE)
    assert argv[:9] == [BWRAP, "--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY), "--cap-drop", "ALL",
                        NAMESPACES[0]]
    assert shutil.which("setpriv") not in argv and "--reuid=65534" not in argv
    prlimit = argv.index(shutil.which("prlimit"))
    assert argv[argv.index("--", prlimit) + 1:] == [sys.executable, "-m", "ipykernel_launcher", "-f",
                                                     "{connection_file}"]


def test_the_mode_follows_who_runs_the_grader(monkeypatch):
    monkeypatch.setattr(sandbox_module.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(sandbox_module.os, "geteuid", lambda: 0)
    assert make_sandbox().mode == DROP_ROOT
    monkeypatch.setattr(sandbox_module.os, "geteuid", lambda: 1000)
    assert make_sandbox().mode == USER_NAMESPACE


def test_the_kernel_gets_none_of_the_graders_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(SECRET, "token")
    argv, work, _ = _root_argv(tmp_path)
    env = {argv[i + 1]: argv[i + 2] for i, a in enumerate(argv) if a == "--setenv"}
    assert argv.index("--clearenv") < argv.index("--setenv") and SECRET not in env
    assert (env["HOME"], env["JPY_PARENT_PID"]) == (str(work), "1")
    assert {name: env.get(name) for name in ENV} == ENV  # the notebooks' environment, from its one home


def test_a_checkout_under_tmp_is_bound_back_read_only(tmp_path, monkeypatch):
    """CI may clone the course under /tmp: the private /tmp must not hide the interpreter and the course."""
    venv = tmp_path / "clone" / ".venv"
    venv.mkdir(parents=True)
    monkeypatch.setattr(sandbox_module.sys, "prefix", str(venv))
    argv = Sandbox(BWRAP, 0, DROP_ROOT).kernel_argv(tmp_path / "work")
    assert str(venv) in _binds(argv)
    assert argv.index("--tmpfs", argv.index("/dev/shm")) < argv.index(str(venv))  # bound after /tmp is emptied


def test_building_a_sandbox_runs_nothing(monkeypatch):
    """No probe at import or construction: only ``refusal()`` (or starting a kernel) runs bwrap, once."""
    monkeypatch.setattr(sandbox_module.subprocess, "run", lambda *a, **k: pytest.fail("ran a command"))
    sandbox = make_sandbox()
    assert sandbox.level in ("bubblewrap", "none") and sandbox.kernel_argv(Path("/tmp/work"))


# ---------------------------------------------------------------- refusals and the unsafe sandbox

@pytest.fixture()
def tools(monkeypatch):
    """Every tool installed and the probe passing, unless a test says otherwise."""
    installed = {"bwrap", "prlimit", "setpriv"}
    monkeypatch.setattr(sandbox_module.shutil, "which", lambda name: f"/usr/bin/{name}" if name in installed else None)
    monkeypatch.setattr(sandbox_module, "_probe", lambda bwrap, mode: None)
    return installed


def _one_line(line: str | None) -> str:
    assert line and "\n" not in line and line.startswith("grade: ")
    return line


def test_refusal_names_what_is_missing_and_how_to_fix_it(tools, monkeypatch):
    assert Sandbox(BWRAP, 2**30, DROP_ROOT).refusal() is None
    tools.discard("bwrap")
    line = _one_line(make_sandbox().refusal())
    assert ("bubblewrap (bwrap) is not installed: apt-get install -y bubblewrap" in line
            and line.endswith("or pass --unsafe-no-sandbox to grade one trusted learner"))
    tools.discard("setpriv")
    assert "setpriv is not installed" in _one_line(Sandbox(BWRAP, 2**30, DROP_ROOT).refusal())
    assert Sandbox(BWRAP, 2**30, USER_NAMESPACE).refusal() is None  # unprivileged bwrap needs no setpriv
    tools.discard("prlimit")
    assert "prlimit is not installed" in _one_line(Sandbox(BWRAP, 2**30, USER_NAMESPACE).refusal())


def test_refusal_when_bwrap_cannot_build_the_sandbox_here(tools, monkeypatch):
    failure = "bwrap: Creating new namespace failed: Operation not permitted"
    monkeypatch.setattr(sandbox_module, "_probe", lambda bwrap, mode: failure)
    line = _one_line(Sandbox(BWRAP, 2**30, DROP_ROOT).refusal())
    assert failure in line and "CAP_SYS_ADMIN" in line
    assert "user namespaces" in _one_line(Sandbox(BWRAP, 2**30, USER_NAMESPACE).refusal())
    monkeypatch.setattr(sandbox_module, "_probe", lambda bwrap, mode: "bwrap: Unknown option --size")
    assert "bubblewrap 0.8 or newer" in _one_line(Sandbox(BWRAP, 2**30, DROP_ROOT).refusal())
    monkeypatch.setattr(sandbox_module, "_probe", lambda bwrap, mode: failure)
    with tempfile.TemporaryDirectory() as work, tempfile.TemporaryDirectory() as spec:
        with pytest.raises(SandboxRefused, match="Operation not permitted"):
            Sandbox(BWRAP, 2**30, DROP_ROOT).kernel_manager(Path(work), Path(spec))
        with pytest.raises(SandboxRefused, match="not installed"):  # no bwrap and no --unsafe-no-sandbox
            Sandbox(None, 2**30).kernel_manager(Path(work), Path(spec))


def test_the_unsafe_sandbox_runs_the_kernel_directly_and_says_so(tools):
    sandbox = make_sandbox(unsafe=True)
    assert (sandbox.level, sandbox.mode, sandbox.refusal()) == ("none", "none", None)
    line = _one_line(sandbox.warning())
    assert "unsandboxed" in line and "--unsafe-no-sandbox" in line
    argv = sandbox.kernel_argv(Path("/tmp/work"))
    assert "/usr/bin/bwrap" not in argv and argv[0] == "/usr/bin/prlimit" and not any("--nproc" in a for a in argv)
    assert argv[-5:] == [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    assert make_sandbox().warning() is None


def test_ci_requires_the_sandbox(tools, monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert "bubblewrap" in required_in_ci(Sandbox(None, 2**31))
    assert "--unsafe-no-sandbox" in required_in_ci(make_sandbox(unsafe=True))
    assert required_in_ci(Sandbox(BWRAP, 2**31)) is None
    monkeypatch.setattr(sandbox_module, "_probe", lambda bwrap, mode: "bwrap: setting up uid map: Permission denied")
    assert "Permission denied" in required_in_ci(Sandbox(BWRAP, 2**31))
    monkeypatch.delenv("CI")
    assert required_in_ci(Sandbox(None, 2**31)) is None


@pytest.mark.skipif(not IS_ROOT, reason="changing a file's group needs root (the drop-root mode's case)")
def test_share_with_nobody_opens_only_what_other_users_cannot_read(tmp_path):
    private, public = tmp_path / "private", tmp_path / "public"
    private.write_text("key")
    public.write_text("x")
    private.chmod(0o600)
    public.chmod(0o644)
    share_with_nobody(private)
    share_with_nobody(public)
    assert (private.stat().st_gid, private.stat().st_mode & 0o777) == (NOBODY, 0o640)
    assert (public.stat().st_gid, public.stat().st_mode & 0o777) == (0, 0o644)


# ---------------------------------------------------------------- attacks from inside a real sandbox

@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    """This host's sandbox: skips (saying why) without one on a developer's machine, fails under CI=true."""
    sandbox = make_sandbox()
    refused = sandbox.refusal()
    if refused:
        (pytest.fail if IN_CI else pytest.skip)(refused)
    return sandbox


class _Kernel:
    def __init__(self, client, workdir: Path, spec_dir: Path):
        self.client, self.workdir, self.spec_dir = client, workdir, spec_dir

    def run(self, code: str, timeout: float = 120):
        """Run ``code`` in the kernel; the JSON value of its variable ``out``."""
        msg_id = self.client.execute(code, user_expressions={"out": "__import__('json').dumps(out)"})
        while True:
            reply = self.client.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        content = reply["content"]
        assert content["status"] == "ok", "\n".join(content.get("traceback", [])) or content
        value = content["user_expressions"]["out"]
        assert value["status"] == "ok", value
        return json.loads(ast.literal_eval(value["data"]["text/plain"]))


@contextlib.contextmanager
def _kernel(sandbox: Sandbox):
    with tempfile.TemporaryDirectory() as work, tempfile.TemporaryDirectory() as spec:
        km = sandbox.kernel_manager(Path(work), Path(spec), manager=KernelManager)
        km.start_kernel(cwd=work)
        client = km.client()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=120)
            yield _Kernel(client, Path(work), Path(spec))
        finally:
            client.stop_channels()
            km.shutdown_kernel(now=True)
            sandbox.release(Path(work))


@pytest.fixture(scope="module")
def kernel(sandbox):
    """One sandboxed kernel with the course stack imported and the course model loaded, as a graded exercise has."""
    os.environ[SECRET] = "a CI token the kernel must not see"
    try:
        with _kernel(sandbox) as kernel:
            del os.environ[SECRET]
            kernel.run("import torch, peft, transformers\nfrom course_utils import load_base_model\n"
                       "model = load_base_model()\nout = None")
            yield kernel
    finally:
        os.environ.pop(SECRET, None)


def _course_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(PACKAGE)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def test_the_kernel_runs_as_nobody_without_any_capability(kernel):
    ids, status = kernel.run(
        "import os\nstatus = {k: v.strip() for k, v in (line.split(':', 1) for line in open('/proc/self/status'))}\n"
        "out = [[os.getuid(), os.geteuid(), os.getgid(), os.getegid(), os.getgroups()],\n"
        "       {k: status[k] for k in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs')}]")
    assert ids == [NOBODY, NOBODY, NOBODY, NOBODY, []]
    assert status == {**{k: "0" * 16 for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}, "NoNewPrivs": "1"}


def test_the_kernel_cannot_remount_or_write_outside_its_folder(kernel):
    targets = [REPO / "sandbox-probe", PACKAGE / "sandbox-probe", PACKAGE / "__init__.py", Path(sys.prefix, "x"),
               Path(sys.base_prefix, "x"), Path("/root/sandbox-probe"), Path("/etc/sandbox-probe"), Path("/etc/passwd"),
               Path("/usr/sandbox-probe"), Path("/sandbox-probe"), kernel.spec_dir / "x", kernel.spec_dir / "connection.json"]
    before = _course_hash()
    out = kernel.run(
        "import errno, pathlib, shutil, subprocess\n"
        "def attempt(path):\n"
        "    try:\n"
        "        with open(path, 'a') as f:\n"
        "            f.write('')\n"
        "        return 'wrote'\n"
        "    except OSError as exc:\n"
        "        return errno.errorcode[exc.errno]\n"
        f"out = {{'writes': {{str(p): attempt(p) for p in {[str(t) for t in targets]!r}}},\n"
        "       'own': [attempt('mine.txt'), attempt('/tmp/mine.txt')],\n"
        "       'remount': subprocess.run(['mount', '-o', 'remount,rw', '/'], capture_output=True).returncode,\n"
        "       'remount /usr': subprocess.run(['mount', '-o', 'remount,rw', '/usr'], capture_output=True).returncode,\n"
        "       'userns remount': subprocess.run(['unshare', '-rm', 'mount', '-o', 'remount,rw', '/usr'],\n"
        "                                        capture_output=True).returncode if shutil.which('unshare') else 1}")
    assert _course_hash() == before, "the kernel changed the course package"
    assert all(result in ("EROFS", "EACCES", "ENOENT") for result in out["writes"].values()), out["writes"]
    assert out["own"] == ["wrote", "wrote"]
    assert out["remount"] != 0 and out["remount /usr"] != 0 and out["userns remount"] != 0, out
    assert not (REPO / "sandbox-probe").exists()
    owned = subprocess.run(["find", str(REPO), "-uid", str(NOBODY), "-print", "-quit"], capture_output=True, text=True)
    assert owned.stdout == "", "the kernel left a file in the checkout"


def test_the_kernel_sees_the_course_package_but_not_the_checkout(kernel):
    hidden = [REPO / "exercises" / "solutions", REPO / "tests", REPO / ".git", REPO / "pyproject.toml",
              Path("/root/.ssh"), Path("/root/.bashrc"), Path("/etc/shadow"), Path("/sys/kernel"), Path("/home")]
    out = kernel.run(
        "import os, course_utils\n"
        f"out = [[p for p in {[str(p) for p in hidden]!r} if os.path.exists(p)], sorted(os.listdir({str(REPO)!r})),\n"
        "       course_utils.__file__]")
    assert out[0] == [], f"the kernel sees {out[0]}"
    assert out[1] == sorted({PACKAGE.name, Path(sys.prefix).name} & set(os.listdir(REPO)))
    assert out[2] == str(PACKAGE / "__init__.py")


def test_proc_shows_only_the_sandbox_processes(kernel):
    out = kernel.run(
        "import os\npids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
        "def cmdline(p):\n"
        "    try:\n"
        "        return open(f'/proc/{p}/cmdline', 'rb').read().replace(b'\\0', b' ').decode()\n"
        "    except OSError:\n"
        "        return ''\n"
        "def reach(path):\n"
        "    try:\n"
        "        return os.listdir(path) if os.path.isdir(path) else open(path, 'rb').read().decode()\n"
        "    except OSError as exc:\n"
        "        return type(exc).__name__\n"
        "out = [sorted(map(int, pids)), [cmdline(p) for p in pids],\n"
        "       [reach(f'/proc/1/{name}') for name in ('root', 'cwd', 'environ', 'mem')]]")
    pids, cmdlines, bwrap_init = out
    assert len(pids) < 10 and os.getpid() not in pids, pids
    assert not any("pytest" in c for c in cmdlines), cmdlines
    assert bwrap_init == ["PermissionError"] * 4  # the sandbox's PID 1 (bwrap, root) is out of the kernel's reach


def test_the_kernel_has_no_network(kernel):
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        out = kernel.run(
            "import socket\n"
            "def connect(host, port):\n"
            "    try:\n"
            "        socket.create_connection((host, port), timeout=2).close()\n"
            "        return 'connected'\n"
            "    except OSError as exc:\n"
            "        return type(exc).__name__\n"
            f"out = [connect('127.0.0.1', {port}), connect('1.1.1.1', 80), socket.if_nameindex(), socket.gethostname()]")
    assert out[0] != "connected" and out[1] != "connected", out
    assert out[2] == [[1, "lo"]] and out[3] == "grading-sandbox"


def test_the_kernel_gets_none_of_the_graders_variables_and_a_small_private_tmp(kernel, sandbox):
    out = kernel.run(f"import os\nst = os.statvfs('/tmp')\nout = [{SECRET!r} in os.environ, os.environ['HOME'], "
                     "sorted(os.listdir('/tmp')), st.f_blocks * st.f_frsize]")
    assert out[0] is False and out[1] == str(kernel.workdir)
    # a checkout or venv under /tmp (CI may clone there) is bound back in: its top folder shows, nothing else
    stack = {p.resolve().parts[2] for p in (REPO, Path(sys.prefix), Path(sys.base_prefix))
             if p.resolve().is_relative_to("/tmp") and len(p.resolve().parts) > 2}
    assert set(out[2]) & set(os.listdir("/tmp")) <= {kernel.workdir.parts[2], kernel.spec_dir.parts[2], *stack}
    assert out[3] <= sandbox.limits.tmp_bytes


def test_the_kernel_runs_under_the_limits(kernel, sandbox):
    lines = kernel.run("out = open('/proc/self/limits').read().splitlines()")
    limits = {line[:26].strip(): line[26:].split()[:2] for line in lines[1:]}
    expected = {"Max processes": (resource.RLIMIT_NPROC, sandbox.limits.processes),
                "Max address space": (resource.RLIMIT_AS, sandbox.memory_bytes),
                "Max cpu time": (resource.RLIMIT_CPU, sandbox.limits.cpu_seconds),
                "Max file size": (resource.RLIMIT_FSIZE, sandbox.limits.file_bytes),
                "Max open files": (resource.RLIMIT_NOFILE, sandbox.limits.open_files),
                "Max core file size": (resource.RLIMIT_CORE, 0)}
    for name, (limit, value) in expected.items():
        capped = str(sandbox_module._capped(limit, value))
        assert limits[name] == [capped, capped], (name, limits[name])
    assert sandbox.memory_bytes == int(MEMORY_GIB * 2**30)


def test_the_memory_cap_stops_a_large_allocation(kernel, sandbox):
    out = kernel.run(
        "def allocate(n):\n"
        "    try:\n"
        "        bytearray(n)\n"
        "        return 'allocated'\n"
        "    except MemoryError:\n"
        "        return 'MemoryError'\n"
        f"out = [allocate(64 * 2**20), allocate(3 * 2**30), allocate({sandbox.memory_bytes})]")
    assert out == ["allocated", "MemoryError", "MemoryError"]  # torch and the model use over 1 GiB of the 4


def _nobody_tasks() -> int:
    """Threads of every uid-65534 process on this host: what RLIMIT_NPROC counts in drop-root mode."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
            total += int(fields["Threads"]) if fields["Uid"].split()[0] == str(NOBODY) else 0
    return total


def test_a_fork_bomb_stops_at_the_process_limit(sandbox):
    """The bomb runs in a kernel of its own whose limit is 512 above what uid 65534 runs now (the default 1024 is
    checked above): it stops there, its kernel still answers, and other sandboxes on this host keep room."""
    limit = min(sandbox.limits.processes, _nobody_tasks() + 512)
    bomb = ("import os, signal, time\n"
            "children, error = [], None\n"
            "try:\n"
            f"    while len(children) < {4 * limit}:\n"
            "        pid = os.fork()\n"
            "        if pid == 0:\n"
            "            time.sleep(120)\n"
            "            os._exit(0)\n"
            "        children.append(pid)\n"
            "except OSError as exc:\n"
            "    error = exc.errno\n"
            "for pid in children:\n"
            "    os.kill(pid, signal.SIGKILL)\n"
            "for pid in children:\n"
            "    os.waitpid(pid, 0)\n"
            "print(len(children), error)\n")
    with _kernel(Sandbox(sandbox.bwrap, sandbox.memory_bytes, sandbox.mode, Limits(processes=limit))) as kernel:
        started, error = kernel.run(f"import subprocess, sys\ndone = subprocess.run([sys.executable, '-S', '-c', "
                                    f"{bomb!r}], capture_output=True, text=True, timeout=300)\nout = done.stdout.split()")
        assert error == "11" and 100 < int(started) < limit, (started, error, limit)  # EAGAIN
        assert kernel.run("import os\nout = [1 + 1, len([p for p in os.listdir('/proc') if p.isdigit()])]") == [2, 2]
    assert subprocess.run(["true"]).returncode == 0


def test_the_course_stack_and_model_work_inside(kernel):
    out = kernel.run(
        "from peft import LoraConfig, get_peft_model\n"
        "ids = torch.tensor([[1, 2, 3, 4]])\n"
        "with torch.no_grad():\n"
        "    logits = model(ids).logits\n"
        "    lora = get_peft_model(load_base_model(), LoraConfig(r=2, target_modules=['c_attn']))\n"
        "    lora_logits = lora(ids).logits\n"
        "out = [list(logits.shape), bool(torch.isfinite(logits).all()), torch.allclose(logits, lora_logits)]")
    assert out[0][:2] == [1, 4] and out[1] is True and out[2] is True  # a fresh LoRA (B = 0) changes nothing


def test_a_detached_process_does_not_outlive_its_kernel(sandbox):
    with _kernel(sandbox) as kernel:
        kernel.run("import subprocess\nsubprocess.Popen(['sleep', '6151.5'], start_new_session=True)\n"
                   "subprocess.Popen(['setsid', '-f', 'sleep', '6151.5'])\nout = None")
        assert _sleepers(), "the test's sleep did not start"
    deadline = time.monotonic() + 10
    while _sleepers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _sleepers(), "a detached process outlived its sandboxed kernel"


def _sleepers() -> str:
    return subprocess.run(["pgrep", "-f", "sleep 6151.5"], capture_output=True, text=True).stdout


def test_a_file_larger_than_the_size_cap_cannot_be_written(sandbox, tmp_path):
    small = Sandbox(sandbox.bwrap, 2**30, sandbox.mode, Limits(file_bytes=2**20))
    work = tmp_path / "work"
    work.mkdir()
    small.prepare(work)
    code = ("import errno\nopen('ok', 'wb').write(bytes(2**19))\n"
            "try:\n    open('big', 'wb').write(bytes(2**21))\n    print('wrote')\n"
            "except OSError as exc:\n    print(errno.errorcode[exc.errno])\n")
    done = subprocess.run(small.argv([sys.executable, "-S", "-c", code], work), capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.strip() == "EFBIG", done
    assert (work / "ok").stat().st_size == 2**19 and (work / "big").stat().st_size <= 2**20


@pytest.mark.skipif(not IS_ROOT or not Path("/usr/bin/python3").exists(),
                    reason="runs bwrap as an unprivileged user (needs root to become one) with /usr/bin/python3")
def test_the_user_namespace_mode_runs_as_nobody_too(sandbox, monkeypatch):
    """What a developer's laptop gets: unprivileged bwrap, the caller mapped to nobody, no capabilities."""
    user = ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "--"]
    if subprocess.run([*user, "unshare", "--user", "true"], capture_output=True).returncode != 0:
        pytest.skip("this host does not let unprivileged users create user namespaces")
    monkeypatch.setattr(sandbox_layout, "stack", lambda: [])  # the venv under /root is not the user's to read
    work = Path(tempfile.mkdtemp())
    try:
        os.chown(work, 1000, 1000)
        argv = Sandbox(sandbox.bwrap, 2**30, USER_NAMESPACE).argv(["/usr/bin/python3", "-S", "-c", PROBE_CODE], work)
        done = subprocess.run([*user, *argv], capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(work)
    assert done.returncode == 0, done.stderr


def test_each_grading_process_runs_its_kernels_under_a_uid_of_its_own(tmp_path):
    """RLIMIT_NPROC counts per uid: two workers' kernels must not share a count (a fork bomb next door)."""
    root = Sandbox("/usr/bin/bwrap", 2**30, mode=DROP_ROOT)
    mine = root.for_this_process()
    assert mine.uid == KERNEL_UID_BASE + os.getpid() != NOBODY
    assert f"--reuid={mine.uid}" in mine.kernel_argv(tmp_path)
    user_ns = Sandbox("/usr/bin/bwrap", 2**30, mode=USER_NAMESPACE)
    assert user_ns.for_this_process() is user_ns


def test_the_memory_cap_holds_for_the_whole_submission_not_each_process():
    """Three children of 600 MiB each fit a 1 GiB cap one by one, not together: where the host lets the grader
    make control groups, the kernel's group stops them (one line says so where it cannot)."""
    sandbox = make_sandbox(memory_gib=1.0).for_this_process()
    if sandbox.refusal():
        (pytest.fail if IN_CI else pytest.skip)(sandbox.refusal())
    if not sandbox.groups(Path("/probe")):
        pytest.skip("this host gives the grader no writable memory and pids control groups: per-process caps only")
    sandbox.release(Path("/probe"))
    with _kernel(sandbox) as kernel:
        out = kernel.run(
            "import subprocess, sys\n"
            "code = 'b = bytearray(600 * 2**20)\\nfor i in range(0, len(b), 4096): b[i] = 1\\nimport time; time.sleep(3)'\n"
            "children = [subprocess.Popen([sys.executable, '-S', '-c', code]) for _ in range(3)]\n"
            "out = [c.wait() for c in children]\n", timeout=120)
        members = [(group / "cgroup.procs").read_text().split() for group in sandbox.groups(kernel.workdir)]
    assert all(members), "the kernel is not in its control groups"
    assert any(code != 0 for code in out), f"1.8 GiB of children ran under a 1 GiB cap: {out}"
