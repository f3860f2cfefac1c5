#!/usr/bin/env python
"""Register the Jupyter kernel ``peft-course`` for this checkout's .venv, without taking it from another.

Run by ``scripts/ensure_venv.sh`` with the venv's python. The kernel is registered per user, so that a
JupyterLab or editor outside the venv can use the course's environment. A second copy of the course (a
fresh clone made to try the setup, a CI checkout) must not silently repoint the kernel at itself: the
spec is written when it is missing, points at this venv already, or points at a python that no longer
exists. Otherwise the existing one is kept and (unless ``--quiet``) a line says how to switch it here.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

NAME = "peft-course"
DISPLAY_NAME = "PEFT adapter course (.venv)"


def user_kernel_spec(name: str = NAME) -> Path:
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "kernels" / name / "kernel.json"


def registered_python(spec: Path) -> str | None:
    """The interpreter a kernel spec starts, or None if the spec is missing or unreadable."""
    try:
        argv = json.loads(spec.read_text())["argv"]
        return str(argv[0]) if argv else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def decide(current: str | None, mine: str) -> str:
    """``"register"`` or ``"keep"`` for a spec that runs ``current`` (None: no spec), ``mine`` being this venv's python."""
    if current is None or current == mine or not os.path.exists(current):
        return "register"
    return "keep"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quiet", action="store_true", help="say nothing when another copy's kernel is kept")
    args = parser.parse_args(argv)
    spec = user_kernel_spec()
    current = registered_python(spec)
    if decide(current, sys.executable) == "keep":
        if not args.quiet:
            print(f"setup: kernel '{NAME}' already runs {current} (another copy of the course); kept it. "
                  f"To use this copy: {sys.executable} -m ipykernel install --user --name {NAME}")
        return 0
    if current == sys.executable:
        return 0
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--user", "--name", NAME,
                    "--display-name", DISPLAY_NAME], check=True, stdout=subprocess.DEVNULL)
    print(f"setup: kernel '{NAME}' registered for {sys.executable}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
