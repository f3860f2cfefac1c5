"""One control group per graded kernel: memory and process limits for the whole submission, not each process.

``prlimit`` caps each process of a sandbox; a submission that starts several processes could still add their
memory up. When the grader runs as root on a host whose cgroup file system it may write (v1 ``memory`` and
``pids`` hierarchies, or a v2 unified one with those controllers), ``create`` makes a group per kernel with
``memory`` and ``pids`` limits, ``enter_argv`` puts the kernel's first process into it before it starts (every
process it starts then stays in it), and ``release`` kills whatever is left and removes the group. Elsewhere
``create`` returns no group and the per-process limits stay the only ones (``sandbox.py`` says so). Used by
``sandbox.py``.
"""
from __future__ import annotations

import os
import shlex
import signal
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
GROUP = "course-grading"


def _v1_dirs(name: str) -> list[Path]:
    return [ROOT / controller / GROUP / name for controller in ("memory", "pids")
            if (ROOT / controller / "cgroup.procs").is_file()]


def _write(path: Path, value: str) -> None:
    path.write_text(value, encoding="ascii")


def create(name: str, memory_bytes: int, processes: int) -> list[Path]:
    """The groups for one kernel with their limits set, or [] when this host gives none (not root, read-only)."""
    if os.geteuid() != 0:
        return []
    made: list[Path] = []
    try:
        v1 = _v1_dirs(name)
        if len(v1) == 2:
            for folder in v1:
                folder.mkdir(parents=True, exist_ok=True)
                made.append(folder)
            if memory_bytes:
                _write(v1[0] / "memory.limit_in_bytes", str(memory_bytes))
                if (v1[0] / "memory.memsw.limit_in_bytes").exists():
                    _write(v1[0] / "memory.memsw.limit_in_bytes", str(memory_bytes))
            _write(v1[1] / "pids.max", str(processes))
            return made
        if (ROOT / "cgroup.controllers").is_file():
            parent = ROOT / GROUP
            parent.mkdir(exist_ok=True)
            _write(parent / "cgroup.subtree_control", "+memory +pids")
            folder = parent / name
            folder.mkdir(exist_ok=True)
            made.append(folder)
            if memory_bytes:
                _write(folder / "memory.max", str(memory_bytes))
                _write(folder / "memory.swap.max", "0")
            _write(folder / "pids.max", str(processes))
            return made
    except OSError:
        release(made)
    return []


def enter_argv(groups: list[Path], argv: list[str]) -> list[str]:
    """``argv`` started from a shell that first moves itself into ``groups`` (then ``exec``s, keeping its pid)."""
    if not groups:
        return argv
    moves = "; ".join(f"echo $$ > {shlex.quote(str(g / 'cgroup.procs'))} || exit 97" for g in groups)
    return ["/bin/sh", "-c", f'{moves}; exec "$@"', "sandbox-cgroup", *argv]


def release(groups: list[Path]) -> None:
    """Kill every process left in ``groups``, then remove them (a few tries: the kernel frees them late)."""
    for _ in range(50):
        left = False
        for group in groups:
            procs = group / "cgroup.procs"
            try:
                pids = [int(p) for p in procs.read_text(encoding="ascii").split()]
            except (OSError, ValueError):
                pids = []
            for pid in pids:
                left = True
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        if not left:
            break
        time.sleep(0.02)
    for group in groups:
        for _ in range(50):
            try:
                group.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)
