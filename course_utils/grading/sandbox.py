"""One sandbox per graded submission: Debian's bubblewrap (``bwrap``) around the submission's kernel.

Inside, the kernel reads the whole file system (the course, its installed stack) but writes only its own
fresh folder; ``/tmp`` is private and empty, there is no network (``--unshare-net``), every process it
starts lives in its own PID namespace and ends with it (``--unshare-pid``, ``--die-with-parent``), and
``prlimit --as`` caps its memory. The kernel talks to the grader over Unix sockets in its folder (ZeroMQ
``ipc`` transport), since a TCP port on the grader's loopback is out of reach once the network is unshared.
Without ``bwrap`` the grader still runs, says in one line which protections are missing, and names the
isolation level ``none`` in its JSON; with ``CI=true`` that is a failure. Used by ``grader.py``.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from jupyter_client import AsyncKernelManager, KernelManager
from jupyter_client.kernelspec import KernelSpecManager

from ..maintenance.notebook_env import ENV

MEMORY_GIB = 4.0          # default memory cap of one submission's kernel (address space, GiB)
SANDBOX_KERNEL = "course-grading-sandbox"
BUBBLEWRAP = "bubblewrap"
NONE = "none"
MISSING_WITHOUT_BWRAP = ("read-only course and home", "private /tmp", "no network",
                         "processes ended with the kernel")


def find_bwrap() -> str | None:
    """The ``bwrap`` binary, if it is installed and can create the namespaces the sandbox needs here."""
    return shutil.which("bwrap")


def _stack_under_tmp() -> list[Path]:
    """The interpreter, the virtual environment and the course package when they live under ``/tmp`` (a
    checkout cloned there, as CI may do): the private ``/tmp`` would hide them, so they are bound back,
    read-only."""
    package_root = Path(__file__).resolve().parents[2]
    wanted = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, package_root)}
    wanted |= {Path(p).resolve() for p in sys.path if p and Path(p).is_dir()}
    under = sorted(p for p in wanted if p.is_relative_to("/tmp") and p != Path("/tmp"))
    return [p for p in under if not any(p != q and p.is_relative_to(q) for q in under)]  # outermost only


@dataclass(frozen=True)
class Sandbox:
    """How each submission's kernel is started: ``bwrap`` (or nothing) plus a memory cap in bytes (0: none)."""
    bwrap: str | None
    memory_bytes: int

    @property
    def level(self) -> str:
        return BUBBLEWRAP if self.bwrap else NONE

    def missing(self) -> list[str]:
        """The protections this sandbox does not give (empty with bwrap and a memory cap)."""
        missing = [] if self.bwrap else list(MISSING_WITHOUT_BWRAP)
        if not self.memory_bytes or not shutil.which("prlimit"):
            missing.append("memory cap")
        return missing

    def warning(self) -> str | None:
        """One line for the start of a batch naming what is missing, or None when nothing is."""
        missing = self.missing()
        if not missing:
            return None
        how = " (install bubblewrap: apt-get install -y bubblewrap)" if not self.bwrap else ""
        return f"grade: isolation {self.level}: missing {', '.join(missing)}{how}"

    def kernel_argv(self, workdir: Path, readable: tuple[Path, ...] = ()) -> list[str]:
        """The command that starts one kernel for ``workdir``, with ``{connection_file}`` for jupyter_client.

        ``readable``: grader folders under ``/tmp`` (hidden by the private ``/tmp``) the kernel must read.
        """
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        if self.memory_bytes and shutil.which("prlimit"):
            argv = [shutil.which("prlimit"), f"--as={self.memory_bytes}", "--", *argv]
        if not self.bwrap:
            return argv
        work = str(workdir)
        ro = [arg for folder in (*readable, *_stack_under_tmp()) for arg in ("--ro-bind", str(folder), str(folder))]
        return [self.bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", *ro,
                "--bind", work, work, "--chdir", work, "--unshare-net", "--unshare-pid", "--unshare-ipc",
                "--unshare-uts", "--die-with-parent", "--new-session",
                # the kernel's parent is bwrap's init (PID 1) here: ipykernel must not poll for the grader's PID
                "--setenv", "JPY_PARENT_PID", "1", *argv]

    def kernel_manager(self, workdir: Path, spec_dir: Path, readable: tuple[Path, ...] = (),
                       manager: type[KernelManager] = AsyncKernelManager) -> KernelManager:
        """A KernelManager whose kernel runs in this sandbox, talking over Unix sockets in ``workdir``.

        ``spec_dir`` holds the generated kernelspec and connection file; it must be outside ``workdir`` (the
        kernel reads it but cannot write it). ``readable``: more grader folders the kernel reads. ``manager``:
        nbclient drives an AsyncKernelManager (a blocking one hides its timeouts and dead kernels).
        """
        kernels = spec_dir / "kernels"
        folder = kernels / SANDBOX_KERNEL
        folder.mkdir(parents=True, exist_ok=True)
        env = {**ENV, "IPYTHONDIR": str(workdir / ".ipython"), "MPLCONFIGDIR": str(workdir / ".matplotlib"),
               "PYTHONDONTWRITEBYTECODE": "1"}
        spec = {"argv": self.kernel_argv(workdir, (spec_dir, *readable)), "display_name": "graded submission",
                "language": "python", "env": env}
        (folder / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
        specs = KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)
        km = manager(kernel_name=SANDBOX_KERNEL, kernel_spec_manager=specs, transport="ipc",
                           ip=str(workdir / ".kernel"))
        km.connection_file = str(spec_dir / "connection.json")
        return km


def make_sandbox(memory_gib: float = MEMORY_GIB, use_bwrap: bool = True) -> Sandbox:
    return Sandbox(find_bwrap() if use_bwrap else None, int(memory_gib * 2**30) if memory_gib > 0 else 0)


def required_in_ci(sandbox: Sandbox) -> str | None:
    """In CI (``CI=true``) a sandbox without bwrap is a failure: the message to stop with, else None."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes") and not sandbox.bwrap:
        return "grade: CI=true but bubblewrap (bwrap) is not installed: .ci/run installs it (apt-get install bubblewrap)"
    return None
