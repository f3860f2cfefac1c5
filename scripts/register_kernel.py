#!/usr/bin/env python
"""Make sure the kernel ``python3`` that ``make lab`` offers starts this checkout's .venv python.

Run by ``scripts/ensure_venv.sh`` with the venv's python. The course has one kernel name everywhere: every
notebook's metadata says ``python3`` (Jupyter writes that name back whenever a notebook is executed), and
``make lab`` allows only ``python3``. ipykernel ships that spec inside the venv
(``.venv/share/jupyter/kernels/python3``), and inside a venv Jupyter reads the venv's kernels before the
user's, so nothing is registered per user and no other copy of the course or other project is touched.
The script writes the venv's spec only when it is missing or starts another python, and says in one line
when another ``python3`` spec would still win.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

NAME = "python3"
DISPLAY_NAME = "Python 3 (ipykernel)"
# jupyter_client starts sys.executable for a spec whose argv[0] is one of these (ipykernel's own spec says "python").
SAME_PYTHON = {"python", "python3"}


def venv_kernel_spec(prefix: str = sys.prefix, name: str = NAME) -> Path:
    return Path(prefix) / "share" / "jupyter" / "kernels" / name / "kernel.json"


def registered_python(spec: Path) -> str | None:
    """The interpreter a kernel spec starts, or None if the spec is missing or unreadable."""
    try:
        argv = json.loads(spec.read_text())["argv"]
        return str(argv[0]) if argv else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def starts(current: str | None, mine: str) -> bool:
    """True if a spec whose argv[0] is ``current`` starts ``mine`` (this venv's python) under this venv's Jupyter."""
    return current is not None and (current == mine or current in SAME_PYTHON)


def winning_spec(name: str = NAME) -> Path | None:
    """The spec file Jupyter (run from this python) uses for the kernel ``name``, or None."""
    from jupyter_client.kernelspec import KernelSpecManager

    found = KernelSpecManager().find_kernel_specs().get(name)
    return Path(found) / "kernel.json" if found else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quiet", action="store_true", help="print nothing when the kernel is already right")
    parser.add_argument("--prefix", default=sys.prefix, help="the environment to write the spec into (default: this one)")
    args = parser.parse_args(argv)
    spec = venv_kernel_spec(args.prefix)
    if not starts(registered_python(spec), sys.executable):
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", args.prefix, "--name", NAME,
                        "--display-name", DISPLAY_NAME], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(f"setup: kernel '{NAME}' written to {spec.parent} for {sys.executable}")
    elif not args.quiet:
        print(f"setup: kernel '{NAME}' in {spec.parent} starts this venv's python")
    winner = winning_spec()
    if args.prefix == sys.prefix and winner is not None and winner != spec and not starts(
            registered_python(winner), sys.executable):
        print(f"setup: warning: Jupyter starts kernel '{NAME}' from {winner} ({registered_python(winner)}), not this "
              f"venv: unset JUPYTER_PREFER_ENV_PATH, or remove that folder")
    return 0


if __name__ == "__main__":
    sys.exit(main())
