"""One sandbox per graded submission: bubblewrap (``bwrap``) around the submission's kernel, run unprivileged.

The kernel runs as an unprivileged uid (65534, ``nobody``, or one of its own per grading process) and gid 65534,
with no capabilities (effective, permitted, inheritable, ambient or bounding) and ``no_new_privs``. When the
grader runs as root, bwrap builds the sandbox and ``setpriv`` drops to that uid inside it (mode ``drop-root``);
otherwise bwrap maps the caller to nobody in a new user namespace (mode ``user-namespace``). Its root file system
(``sandbox_layout.py``) is built from read-only binds of only what it needs: ``/usr`` (and the host's ``/bin``,
``/lib``... links), the interpreter's tree, the virtual environment, the site-packages folders, the ``course_utils``
package folder (not the checkout: solutions, tests, ``.git`` are absent), the folders the grader names and a few
``/etc`` files. It writes only its own folder, plus a small private ``/tmp`` and ``/dev/shm``.
It sees a fresh ``/proc`` of its own PID namespace, has no network (only its own loopback), its own IPC and UTS
namespaces, none of the grader's environment variables but ``$COURSE_MODEL`` and ``$TZ``, and every process it
starts ends with it (``--die-with-parent``, ``--new-session``). ``prlimit`` caps each of its processes: address
space, CPU time, file size, open files and the process count (RLIMIT_NPROC counts per uid, hence a uid per
grading process, ``for_this_process``). Where the host lets a root grader write its control groups,
``cgroups.py`` caps the memory and processes of the whole submission together. Wall time and output size are
the grader's. The kernel talks to the grader over Unix sockets in its folder (ZeroMQ ``ipc`` transport): the
grader's loopback is out of its reach.

It can still: read the files bound in (the installed stack and the course package), use the CPU and memory under
those caps, fill its own folder with files under the size cap until the grader's wall time ends it, and create
user namespaces of its own (with no more privilege than it has).

When bwrap is missing or cannot start such a sandbox here (one probe per process, run when first needed),
``Sandbox.refusal()`` says so in one line and ``kernel_manager`` raises ``SandboxRefused`` rather than run the
submission unsandboxed; ``make_sandbox(unsafe=True)`` runs the kernel directly (isolation ``none``, one warning
line), and with ``CI=true`` that is a failure. Used by ``grader.py``.
"""
from __future__ import annotations

import functools
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from jupyter_client import AsyncKernelManager, KernelManager
from jupyter_client.kernelspec import KernelSpecManager

from ..maintenance.notebook_env import ENV
from . import cgroups
from .sandbox_layout import ancestors, binds, environment, etc_files, host_folders, host_layout, tree

MEMORY_GIB = 4.0          # default memory cap of one submission's kernel (address space, GiB)
SANDBOX_KERNEL = "course-grading-sandbox"
BUBBLEWRAP = "bubblewrap"
NONE = "none"
DROP_ROOT = "drop-root"              # bwrap runs as root; setpriv drops to nobody inside the sandbox
USER_NAMESPACE = "user-namespace"    # bwrap runs unprivileged; a user namespace maps the caller to nobody
NOBODY = 65534
UNSAFE_FLAG = "--unsafe-no-sandbox"
CI_VALUES = ("1", "true", "yes")
SETPRIV_ARGS = (f"--regid={NOBODY}", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs")
# In drop-root mode each kernel gets a uid of its own, this plus its grading process's pid (unique among live
# processes): RLIMIT_NPROC counts per uid, so one submission's fork bomb cannot starve a neighbour's threads.
KERNEL_UID_BASE = 200_000
NAMESPACES = ("--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
              "--hostname", "grading-sandbox", "--die-with-parent", "--new-session")
PROBE_CODE = ("import os, sys\n"
              "caps = [line.split()[1] for line in open('/proc/self/status') if line.startswith('Cap')]\n"
              f"ok = os.getuid() == os.geteuid() == os.getgid() == {NOBODY} and not any(int(c, 16) for c in caps)\n"
              "sys.exit(0 if ok else f'the sandbox ran as uid {os.getuid()} with capabilities {caps}')\n")


class SandboxRefused(RuntimeError):
    """Raised instead of starting a submission's kernel unsandboxed; the message is ``Sandbox.refusal()``."""


@dataclass(frozen=True)
class Limits:
    """What one sandboxed kernel may use besides memory (``Sandbox.memory_bytes``); each capped at the grader's own."""
    processes: int = 1024           # RLIMIT_NPROC, threads included (torch's fit; a fork bomb stops there)
    cpu_seconds: int = 900          # RLIMIT_CPU, per process
    file_bytes: int = 2**30         # RLIMIT_FSIZE: the largest file it may write
    open_files: int = 1024          # RLIMIT_NOFILE
    tmp_bytes: int = 256 * 2**20    # size of each of its tmpfs, /tmp and /dev/shm (they use the host's RAM)


def default_mode() -> str:
    """How bwrap drops privilege for this process: ``drop-root`` when it runs as root, else ``user-namespace``."""
    return DROP_ROOT if os.geteuid() == 0 else USER_NAMESPACE


def find_bwrap() -> str | None:
    """The ``bwrap`` binary on ``PATH``, if installed (whether it works here is ``Sandbox.refusal``'s probe)."""
    return shutil.which("bwrap")


@dataclass(frozen=True)
class Sandbox:
    """How each submission's kernel is started: ``bwrap`` (None: directly), a memory cap in bytes (0: none), how
    privilege is dropped (``mode``), the other limits, and whether running unsandboxed was asked for (``unsafe``)."""
    bwrap: str | None
    memory_bytes: int
    mode: str = field(default_factory=default_mode)
    limits: Limits = Limits()
    unsafe: bool = False
    uid: int = NOBODY        # the kernel's uid in drop-root mode (``for_this_process`` gives each worker its own)

    def __post_init__(self) -> None:
        if not self.bwrap:
            object.__setattr__(self, "mode", NONE)

    def for_this_process(self) -> Sandbox:
        """This sandbox with a kernel uid of this process's own (drop-root mode), so concurrent kernels never
        share a process count; unchanged in the other modes."""
        if self.mode != DROP_ROOT:
            return self
        return replace(self, uid=KERNEL_UID_BASE + os.getpid())

    @property
    def level(self) -> str:
        return BUBBLEWRAP if self.bwrap else NONE

    def refusal(self) -> str | None:
        """One line saying why submissions cannot be sandboxed here and how to fix it, or None when they can."""
        if self.unsafe:
            return None
        problem = self._problem()
        return problem and f"grade: cannot sandbox submissions: {problem}; or pass {UNSAFE_FLAG} to grade one trusted learner"

    def _problem(self) -> str | None:
        if not self.bwrap:
            return "bubblewrap (bwrap) is not installed: apt-get install -y bubblewrap"
        if not shutil.which("prlimit"):
            return "prlimit is not installed (it limits the kernel): apt-get install -y util-linux"
        if self.mode == DROP_ROOT and not shutil.which("setpriv"):
            return "setpriv is not installed (it drops root in the sandbox): apt-get install -y util-linux"
        failure = _probe(self.bwrap, self.mode)
        return failure and _how_to_fix(failure, self.mode)

    def warning(self) -> str | None:
        """One line for the start of a batch when submissions are not fully contained, else None."""
        if self.unsafe:
            return (f"grade: isolation none ({UNSAFE_FLAG}): each submission runs unsandboxed as this user, with "
                    "its files, network and processes; grade only a trusted learner's work this way")
        refused = self.refusal()
        if refused:
            return refused
        return None if self.memory_bytes else f"grade: isolation {self.level}: no memory cap"

    def argv(self, command: list[str], workdir: Path, readable: tuple[Path, ...] = (),
             env: dict[str, str] | None = None) -> list[str]:
        """``command`` run in this sandbox, in ``workdir`` (its one writable folder); ``readable``: more folders it
        reads; ``env``: variables it gets besides the sandbox's own (unsandboxed, the caller's environment)."""
        if self.level == NONE:
            return self._limited(command)
        if self.mode == DROP_ROOT:
            inner = [shutil.which("setpriv") or "setpriv", f"--reuid={self.uid}", *SETPRIV_ARGS, "--", *command]
            identity = []
        else:
            inner = command
            identity = ["--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY), "--cap-drop", "ALL"]
        return [self.bwrap, *identity, *NAMESPACES, *self._file_system(Path(workdir), readable),
                *environment(Path(workdir), env or {}), *self._limited(inner)]

    def _limited(self, command: list[str]) -> list[str]:
        prlimit = shutil.which("prlimit")
        if not prlimit:
            return command
        caps = {"as": (resource.RLIMIT_AS, self.memory_bytes), "cpu": (resource.RLIMIT_CPU, self.limits.cpu_seconds),
                "fsize": (resource.RLIMIT_FSIZE, self.limits.file_bytes), "core": (resource.RLIMIT_CORE, 0),
                "nofile": (resource.RLIMIT_NOFILE, self.limits.open_files)}
        if self.level != NONE:  # unsandboxed, the process count would be the whole grader user's
            caps["nproc"] = (resource.RLIMIT_NPROC, self.limits.processes)
        if not self.memory_bytes:
            del caps["as"]
        return [prlimit, *(f"--{name}={_capped(*cap)}" for name, cap in caps.items()), "--", *command]

    def _file_system(self, workdir: Path, readable: tuple[Path, ...]) -> list[str]:
        tmpfs = [arg for dest in ("/dev/shm", "/tmp") for arg in
                 ("--perms", "1777", "--size", str(self.limits.tmp_bytes), "--tmpfs", dest)]
        args = ["--proc", "/proc", "--dev", "/dev", *tmpfs, *host_layout(), *etc_files()]
        bound = binds(workdir, readable)
        covered = [*host_folders(), *(path for _, path in bound)]
        made: set[Path] = set()
        for how, path in bound:
            args += [*ancestors(path, covered, made), how, os.path.realpath(path), str(path)]
        return [*args, "--chdir", str(workdir)]

    def kernel_argv(self, workdir: Path, readable: tuple[Path, ...] = ()) -> list[str]:
        """The command that starts one kernel for ``workdir``, with ``{connection_file}`` for jupyter_client.

        ``readable``: grader folders the kernel must read (the kernel sees nothing else of the grader's).
        """
        env = {**kernel_env(workdir), "HOME": str(workdir), "JPY_PARENT_PID": "1"}  # its parent is bwrap's init
        return self.argv([sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"], workdir, readable,
                         env)

    def prepare(self, workdir: Path, readable: tuple[Path, ...] = ()) -> None:
        """Let the kernel's uid write ``workdir`` and read ``readable`` (drop-root mode: nobody owns ``workdir``
        and gid 65534 may read what "other" may not; in the other modes the caller's files are already its)."""
        if self.level == NONE or self.mode != DROP_ROOT:
            return
        for path in tree(Path(workdir)):
            os.lchown(path, self.uid, NOBODY)
        for folder in readable:
            for path in tree(Path(folder)):
                share_with_nobody(path)

    def groups(self, workdir: Path) -> list[Path]:
        """The control groups that hold the whole kernel of ``workdir`` to ``memory_bytes`` and the process limit
        together (``cgroups.py``), created on first use; [] where the host gives none."""
        name = f"{self.uid}-{abs(hash(str(workdir))) % 10**12}"
        return cgroups.create(name, self.memory_bytes, self.limits.processes)

    def release(self, workdir: Path) -> None:
        """End every process left of ``workdir``'s kernel and remove its control groups."""
        if self.level != NONE:
            cgroups.release(self.groups(workdir))

    def kernel_manager(self, workdir: Path, spec_dir: Path, readable: tuple[Path, ...] = (),
                       manager: type[KernelManager] = AsyncKernelManager) -> KernelManager:
        """A KernelManager whose kernel runs in this sandbox, talking over Unix sockets in ``workdir``.

        ``spec_dir`` holds the generated kernelspec and connection file; it must be outside ``workdir`` (the
        kernel reads it but cannot write it). ``readable``: more grader folders the kernel reads. ``manager``:
        nbclient drives an AsyncKernelManager (a blocking one hides its timeouts and dead kernels). Raises
        ``SandboxRefused`` when this sandbox cannot be built here and running unsandboxed was not asked for.
        """
        refused = self.refusal()
        if refused:
            raise SandboxRefused(refused)
        kernels = spec_dir / "kernels"
        folder = kernels / SANDBOX_KERNEL
        folder.mkdir(parents=True, exist_ok=True)
        argv = self.kernel_argv(workdir, (spec_dir, *readable))
        if self.level != NONE:
            argv = cgroups.enter_argv(self.groups(workdir), argv)
        spec = {"argv": argv, "display_name": "graded submission", "language": "python", "env": kernel_env(workdir)}
        (folder / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
        self.prepare(workdir, (spec_dir, *readable))
        specs = KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)
        if self.level != NONE and self.mode == DROP_ROOT:
            manager = _sharing_connection_file(manager)
        km = manager(kernel_name=SANDBOX_KERNEL, kernel_spec_manager=specs, transport="ipc",
                     ip=str(workdir / ".kernel"))
        km.connection_file = str(spec_dir / "connection.json")
        return km


def kernel_env(workdir: Path) -> dict[str, str]:
    """The variables every graded kernel gets (its kernelspec's ``env``)."""
    return {**ENV, "IPYTHONDIR": str(workdir / ".ipython"), "MPLCONFIGDIR": str(workdir / ".matplotlib"),
            "PYTHONDONTWRITEBYTECODE": "1"}


def make_sandbox(memory_gib: float = MEMORY_GIB, unsafe: bool = False) -> Sandbox:
    """The sandbox for this host; ``unsafe``: run kernels directly (isolation ``none``), for one trusted learner."""
    memory = int(memory_gib * 2**30) if memory_gib > 0 else 0
    return Sandbox(None if unsafe else find_bwrap(), memory, unsafe=unsafe)


def required_in_ci(sandbox: Sandbox) -> str | None:
    """In CI (``CI=true``) an unsandboxed grader is a failure: the message to stop with, else None."""
    if os.environ.get("CI", "").lower() not in CI_VALUES:
        return None
    if sandbox.unsafe:
        return f"grade: CI=true refuses {UNSAFE_FLAG}: CI grades in the sandbox (.ci/run installs bubblewrap)"
    if not sandbox.bwrap:
        return "grade: CI=true but bubblewrap (bwrap) is not installed: .ci/run installs it (apt-get install bubblewrap)"
    return sandbox.refusal()


def share_with_nobody(path: Path) -> None:
    """Let gid 65534 read ``path`` (and enter it, a folder) when "other" may not: group 65534, group read."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return
    need = 0o5 if stat.S_ISDIR(st.st_mode) else 0o4
    if st.st_mode & need != need:
        os.lchown(path, -1, NOBODY)
        os.chmod(path, stat.S_IMODE(st.st_mode) | need << 3)


def _how_to_fix(failure: str, mode: str) -> str:
    """The probe's ``failure`` and what usually fixes it."""
    if "nknown option" in failure or "nrecognized option" in failure:
        return f"this bwrap is too old ({failure}): install bubblewrap 0.8 or newer"
    if mode == DROP_ROOT:
        return (f"bwrap cannot build a sandbox as root here ({failure}): give the container CAP_SYS_ADMIN and "
                "unconfined seccomp/AppArmor, or run the grader as a user with user namespaces enabled")
    return (f"bwrap cannot build an unprivileged sandbox here ({failure}): enable user namespaces "
            "(sysctl kernel.unprivileged_userns_clone=1, kernel.apparmor_restrict_unprivileged_userns=0) "
            "or run the grader as root")


@functools.cache
def _probe(bwrap: str, mode: str) -> str | None:
    """Why ``bwrap`` cannot run a command as nobody without capabilities here, or None (once per process)."""
    sandbox = Sandbox(bwrap, 0, mode)
    with tempfile.TemporaryDirectory(prefix="sandbox-probe-") as tmp:
        sandbox.prepare(Path(tmp))
        try:
            done = subprocess.run(sandbox.argv([sys.executable, "-S", "-c", PROBE_CODE], Path(tmp)),
                                  capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{type(exc).__name__}: {exc}"
    if done.returncode == 0:
        return None
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {done.returncode}"


@functools.cache
def _sharing_connection_file(manager: type[KernelManager]) -> type[KernelManager]:
    """``manager`` whose connection file (written 0600 by jupyter_client) the kernel's gid 65534 may read."""
    class Sharing(manager):
        def write_connection_file(self, **kwargs) -> None:
            super().write_connection_file(**kwargs)
            share_with_nobody(Path(self.connection_file))

    Sharing.__name__ = Sharing.__qualname__ = f"Sandboxed{manager.__name__}"
    return Sharing


def _capped(limit: int, value: int) -> int:
    hard = resource.getrlimit(limit)[1]
    return value if hard == resource.RLIM_INFINITY else min(value, hard)
