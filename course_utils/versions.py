"""The pinned package set, read from this package's own metadata, and what is installed.

Defined in lesson 1 (the versions cell at the top of every lesson); ``doctor`` uses it.
"""
from __future__ import annotations

import platform
import re
from dataclasses import dataclass
from importlib import metadata

DIST_NAME = "peft-adapter-course"
CORE = ("torch", "transformers", "peft", "tokenizers", "safetensors", "accelerate")
_PIN = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;]+)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_versions() -> dict[str, str]:
    """``{package: version}`` for every ``==`` pin in pyproject.toml (extras included)."""
    try:
        requires = metadata.requires(DIST_NAME) or []
    except metadata.PackageNotFoundError:
        raise RuntimeError(
            "The course package is not installed: run `make lab` (or `pip install -e .`) in the course folder."
        ) from None
    pins = {}
    for req in requires:
        m = _PIN.match(req)
        if m:
            pins[_norm(m.group(1))] = m.group(2)
    return pins


def installed_version(name: str) -> str | None:
    """The installed version of ``name`` (local labels such as ``+cpu`` dropped), or None."""
    try:
        return metadata.version(name).split("+")[0]
    except metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class VersionCheck:
    name: str
    pinned: str
    installed: str | None

    @property
    def ok(self) -> bool:
        return self.installed == self.pinned


def check_versions() -> list[VersionCheck]:
    """One ``VersionCheck`` per pinned package: is the tested version the one installed?"""
    return [VersionCheck(n, v, installed_version(n)) for n, v in sorted(pinned_versions().items())]


def versions_summary() -> str:
    """Python, the core libraries and whether the whole pinned set is installed, as a few lines."""
    checks = check_versions()
    by_name = {c.name: c for c in checks}
    lines = [f"python        {platform.python_version()}"]
    lines += [f"{n:<13} {by_name[n].installed or 'missing'}" for n in CORE if n in by_name]
    bad = [c for c in checks if not c.ok]
    if bad:
        lines.append("NOT the tested set: " + ", ".join(f"{c.name} {c.installed or 'missing'} (want {c.pinned})"
                                                         for c in bad) + " -> run `make lab` again.")
    else:
        lines.append("every pinned package matches the tested set")
    return "\n".join(lines)
