"""Writing a folder all at once: build it in a hidden stage folder beside the target, then rename it in.

Every save in the package goes through ``staged_folder`` (``safe_save``, lesson 1's rebuilt adapter, the
stand-in adapters, the asset build), so a crash or a kill mid-write leaves the old folder or the new one,
never a half-written mix. One writer per folder is assumed.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

STAGE = "saving"  # .<name>.saving-XXXX: a folder being written
ASIDE = "old"     # .<name>.old-<ns>: the previous folder, moved aside until the new one is in place


def siblings(folder: Path, kind: str) -> list[Path]:
    """The hidden ``.<name>.<kind>-*`` folders beside ``folder`` (``kind`` is ``STAGE`` or ``ASIDE``), sorted."""
    prefix = f".{folder.name}.{kind}-"
    if not folder.parent.is_dir():
        return []
    return sorted(p for p in folder.parent.iterdir() if p.name.startswith(prefix))


@contextmanager
def staged_folder(target: str | Path, replace: bool = False):
    """Yield an empty stage folder beside ``target``; when the block succeeds it becomes ``target``.

    An existing ``target`` raises ``FileExistsError`` before anything is written unless ``replace`` (an
    empty folder is always replaced). With ``replace`` the old folder is moved aside, deleted only after
    the rename succeeded, and put back if it failed. On any exception the stage is removed.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} is a file, not a folder: choose another folder name to save into.")
    if target.is_dir() and any(target.iterdir()) and not replace:
        raise FileExistsError(f"{target} is not empty: choose a new folder, or replace it explicitly.")
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.{STAGE}-", dir=target.parent))
    try:
        yield stage
        aside = None
        if target.is_dir() and any(target.iterdir()):
            aside = target.parent / f".{target.name}.{ASIDE}-{time.time_ns()}"
            os.rename(target, aside)
        elif target.exists():
            target.rmdir()
        try:
            os.rename(stage, target)
        except BaseException:
            if aside is not None and not target.exists():
                os.rename(aside, target)
            raise
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
