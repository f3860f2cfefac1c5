"""What a grading sandbox sees (``sandbox.py`` builds it with bwrap): its root file system, bound read-only from
the host's ``/usr``, the interpreter, the virtual environment and the course package, with the folders bwrap must
create on the way; and its environment variables, the grader's replaced by the sandbox's own.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

HOST_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")   # links into /usr, or folders, on the host
ETC_FILES = ("passwd", "group", "nsswitch.conf", "ld.so.cache", "localtime")
PASSED_ENV = ("COURSE_MODEL", "TZ")  # the only grader variables the kernel sees
CREATED = ("/", "/tmp", "/etc", "/dev", "/proc")  # folders that exist in the sandbox before any bind


def tree(root: Path) -> list[Path]:
    """``root`` and everything under it, links not followed."""
    if not root.is_dir() or root.is_symlink():
        return [root] if os.path.lexists(root) else []
    paths = [root]
    for folder, dirs, files in os.walk(root):
        paths += [Path(folder, name) for name in (*dirs, *files)]
    return paths


def host_folders() -> list[Path]:
    """The host folders bound whole at their own path: ``/usr`` and those of ``HOST_LINKS`` that are not links."""
    return [Path("/usr"), *(p for p in (Path("/", n) for n in HOST_LINKS) if p.is_dir() and not p.is_symlink())]


def host_layout() -> list[str]:
    args = []
    for name in HOST_LINKS:
        path = Path("/", name)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
    return [*args, *(arg for p in host_folders() for arg in ("--ro-bind", str(p), str(p)))]


def etc_files() -> list[str]:
    args = ["--perms", "0755", "--dir", "/etc"]
    for name in ETC_FILES:
        path = Path("/etc", name)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_file():
            args += ["--ro-bind", str(path), str(path)]
    return args


def stack() -> list[Path]:
    """What the kernel's interpreter reads, as it names it: the interpreter's tree, the virtual environment, the
    site-packages folders, the course package (its folder only: an editable install maps it into the checkout)
    and the ``$COURSE_MODEL`` folder, if one is set."""
    package = Path(os.path.abspath(__file__)).parents[1]
    sites = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")]
    model = os.environ.get("COURSE_MODEL", "").strip()
    paths = [sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix, *sites, package,
             Path(os.path.realpath(sys.executable)).parent.parent]
    if model and Path(model).expanduser().is_dir():
        paths.append(Path(model).expanduser())
    return [Path(os.path.abspath(p)) for p in paths]


def binds(workdir: Path, readable: tuple[Path, ...]) -> list[tuple[str, Path]]:
    """(``--ro-bind`` or ``--bind``, path) of every folder bound at its own path, outer ones first; the stack and
    ``readable`` read-only (only the outermost of nested ones, none under ``/usr``), ``workdir`` writable."""
    wanted = {p for p in (*stack(), *(Path(os.path.abspath(r)) for r in readable)) if p.exists()}
    wanted = {p for p in wanted if not under(p, host_folders())}
    outer = [p for p in wanted if not any(q != p and p.is_relative_to(q) for q in wanted)]
    binds = [*(("--ro-bind", p) for p in outer), ("--bind", Path(os.path.abspath(workdir)))]
    return sorted(binds, key=lambda bind: bind[1].parts)


def ancestors(path: Path, covered: list[Path], made: set[Path]) -> list[str]:
    """``--dir`` for each ancestor of ``path`` the sandbox lacks, mode 0755: bwrap would make it 0700, which
    nobody cannot enter."""
    args = []
    for parent in reversed(path.parents):
        if str(parent) in CREATED or parent in made or under(parent, covered):
            continue
        made.add(parent)
        args += ["--perms", "0755", "--dir", str(parent)]
    return args


def under(path: Path, roots: list[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def environment(workdir: Path, env: dict[str, str]) -> list[str]:
    """bwrap's arguments that replace the grader's environment with the sandbox's own plus ``env``."""
    values = {"PATH": f"{os.path.abspath(sys.prefix)}/bin:/usr/local/bin:/usr/bin:/bin", "HOME": str(workdir),
              "USER": "nobody", "LOGNAME": "nobody", "LANG": "C.UTF-8", "TMPDIR": "/tmp", "PYTHONNOUSERSITE": "1",
              **{name: os.environ[name] for name in PASSED_ENV if name in os.environ}, **env}
    return ["--clearenv", *(arg for name, value in values.items() for arg in ("--setenv", name, value))]
