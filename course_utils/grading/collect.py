"""Copying a question's evidence out of a submission's folder into the grader's own, safely.

The grader calls ``collect`` right after each check cell: from then on nothing the submission does can change
that question's evidence. The copy opens every folder and file relative to its parent with ``O_NOFOLLOW``
(``openat``), so a link anywhere, or one swapped in while the copy runs, is skipped, never followed; only
regular files are copied (a FIFO or device is skipped without blocking), within size limits. The copies are the
grader's files: the trusted checker (``check.py``) reads nothing else. Used by ``grader.py``.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_FILE_BYTES = 256 * 2**20    # one evidence file
MAX_TOTAL_BYTES = 512 * 2**20   # one question's evidence
MAX_ENTRIES = 5_000             # files and folders of one question's evidence
_DIR_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK


class _Budget:
    def __init__(self):
        self.bytes = 0
        self.entries = 0


def collect(root: Path, name: str, dest: Path) -> bool:
    """Copy the folder ``root/name`` (``root`` itself must be a real folder, not a link) to ``dest``.

    Returns False, leaving ``dest`` absent or partial, when there is nothing to copy or a limit was passed.
    """
    try:
        root_fd = os.open(root, _DIR_FLAGS)
    except OSError:
        return False
    try:
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=root_fd)
        except OSError:
            return False
        try:
            return _copy_dir(fd, dest, _Budget())
        finally:
            os.close(fd)
    finally:
        os.close(root_fd)


def _copy_dir(fd: int, dest: Path, budget: _Budget) -> bool:
    dest.mkdir(parents=True, exist_ok=True)
    with os.scandir(fd) as entries:
        names = [e.name for e in entries]
    for name in names:
        budget.entries += 1
        if budget.entries > MAX_ENTRIES:
            return False
        try:
            mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
        except OSError:
            continue
        if stat.S_ISDIR(mode):
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue
            try:
                if not _copy_dir(sub, dest / name, budget):
                    return False
            finally:
                os.close(sub)
        elif stat.S_ISREG(mode) and not _copy_file(fd, name, dest / name, budget):
            return False
    return True


def _copy_file(fd: int, name: str, target: Path, budget: _Budget) -> bool:
    try:
        src = os.open(name, _FILE_FLAGS, dir_fd=fd)
    except OSError:
        return True  # a link or a vanished file: skipped
    try:
        info = os.fstat(src)
        if not stat.S_ISREG(info.st_mode):
            return True
        if info.st_size > MAX_FILE_BYTES or budget.bytes + info.st_size > MAX_TOTAL_BYTES:
            return False
        with open(target, "wb") as out:
            copied = 0
            while chunk := os.read(src, 1 << 20):
                copied += len(chunk)
                if copied > MAX_FILE_BYTES:
                    return False
                out.write(chunk)
        budget.bytes += copied
        return True
    finally:
        os.close(src)
