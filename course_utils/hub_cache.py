"""A Hugging Face Hub cache built offline, one commit at a time, and the revisions an adapter was made from.

Defined in lesson 8, section 5 "Hub revisions: pin the commit" (``add_commit``, ``record_revisions``).

``add_commit`` writes a folder's files into a cache folder exactly as ``hf_hub_download`` and
``snapshot_download`` (huggingface_hub 2.4) leave a download there, so every loader resolves it by itself::

    <cache_dir>/models--ORG--NAME/
        blobs/<etag>                          each file's bytes, once: named by sha256 for LFS files (weights),
                                              by git's blob sha1 for the others (json, README.md)
        snapshots/<commit>/<file> -> ../../blobs/<etag>     one folder per commit, relative symlinks (copies
                                                            where the system refuses symlinks)
        refs/main                             the commit ``main`` points at (40 hex digits, no newline)
        trees/<commit>.json                   the commit's file list, as snapshot_download caches it

What is simulated: the commit id. The Hub's is git's hash of a commit object; here it is the sha1 of the repo id,
the parent commit, the message and the files, so the same files give the same 40 hex digits on every machine.
A real download also writes ``.locks/`` and, for optional files a loader asked for in vain, ``.no_exist/``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from .adapter_format import CONFIG_FILE

REVISIONS_FILE = "revisions.json"  # written by record_revisions, next to adapter_config.json
# Suffixes the Hub's default .gitattributes stores with git LFS (the weights formats the course meets).
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".h5", ".msgpack")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_REF = re.compile(r"^(?!.*\.\.)[\w.-]+(?:/[\w.-]+)*$")  # a branch or tag name: main, v1.0, refs/pr/1
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
_TREE_FORMAT = 1  # huggingface_hub._tree_cache.TREE_CACHE_FORMAT_VERSION
_CACHEDIR_TAG = ("Signature: 8a477f597d28d172789f06886806bc55\n"
                 "# This file is a cache directory tag created by huggingface_hub.\n")


def repo_folder(cache_dir, repo_id: str) -> Path:
    """``<cache_dir>/models--ORG--NAME``, the folder huggingface_hub keeps a model repo's files in."""
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id) or "--" in repo_id:
        raise ValueError(f"{repo_id!r} is not a Hub model id of the form 'org/name' (letters, digits, '-', '_', '.').")
    return Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))


def _digest(path: Path, algorithm: str, prefix: bytes = b"") -> str:
    """Hex digest of ``prefix`` + the file's bytes, read in chunks (a full-size model is hundreds of MB)."""
    digest = hashlib.new(algorithm, prefix)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _git_blob_sha1(data: bytes) -> str:
    """The id git (and the Hub's ``oid``) gives a file: sha1 of ``b"blob <size>\\0" + data``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _tree_entry(path: Path, lfs: bool) -> tuple[str, dict]:
    """The file's etag (its blob's name) and its entry in ``trees/<commit>.json``."""
    size = path.stat().st_size
    if not lfs:
        blob_id = _digest(path, "sha1", b"blob %d\0" % size)
        return blob_id, {"size": size, "blob_id": blob_id}
    sha256 = _digest(path, "sha256")
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    return sha256, {"size": size, "blob_id": _git_blob_sha1(pointer), "lfs_sha256": sha256, "lfs_size": size}


def _files_of(folder: Path) -> dict[str, Path]:
    """``{path in the repo: file}`` for every file under ``folder``, sorted, hidden files left out."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder: pass the folder whose files make the commit.")
    files = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))
             if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)}
    if not files:
        raise ValueError(f"{folder} holds no files: a commit needs at least one.")
    return files


def _write_if_absent(path: Path, data: bytes | Path) -> None:
    """Write ``data`` (bytes, or a file to copy) to ``path`` through a temporary name, unless ``path`` exists."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".incomplete")
        if isinstance(data, Path):
            shutil.copyfile(data, tmp)
        else:
            tmp.write_bytes(data)
        os.replace(tmp, path)


def _link_or_copy(blob: Path, link: Path) -> None:
    """A relative symlink to the blob, or (where symlinks are refused, e.g. Windows without developer mode) a
    copy of it, as huggingface_hub's ``_create_symlink`` does."""
    try:
        link.symlink_to(os.path.relpath(blob, link.parent))
    except OSError:
        shutil.copyfile(blob, link)


def _write_ref(repo: Path, ref: str, commit: str) -> None:
    path = repo / "refs" / ref
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(commit)  # huggingface_hub writes the bare hash, no newline


def add_commit(cache_dir, repo_id: str, folder, ref: str | None = "main", message: str = "") -> str:
    """Add ``folder``'s files to ``cache_dir`` as a new commit of ``repo_id``; return the commit (40 hex digits).

    The layout is the one in this module's docstring. The parent is the commit ``ref`` points at (if any), and
    ``ref`` is moved to the new commit, as a push to that branch followed by a download does; ``ref=None`` adds
    the commit without moving any ref (a commit you only reach by its hash).
    """
    repo = repo_folder(cache_dir, repo_id)
    if ref is not None and not (isinstance(ref, str) and _REF.match(ref)):
        raise ValueError(f"{ref!r} is not a branch or tag name (such as 'main'): pass one, or ref=None.")
    files = _files_of(Path(folder))
    parent = read_ref(cache_dir, repo_id, ref) if ref and (repo / "refs" / ref).is_file() else ""
    entries, blobs = {}, {}
    for name, path in files.items():
        etag, entries[name] = _tree_entry(path, lfs=name.endswith(LFS_SUFFIXES))
        blobs[name] = etag
        _write_if_absent(repo / "blobs" / etag, path)
    listing = json.dumps(sorted(entries.items()), sort_keys=True)
    commit = hashlib.sha1(f"{repo_id}\n{parent}\n{message}\n{listing}".encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    for name, etag in blobs.items():
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not (link.is_symlink() or link.exists()):
            _link_or_copy(repo / "blobs" / etag, link)
    tree = {"format_version": _TREE_FORMAT, "files": {name: entries[name] for name in sorted(entries)}}
    _write_if_absent(repo / "trees" / f"{commit}.json", json.dumps(tree, indent=1).encode())
    _write_if_absent(Path(cache_dir) / "CACHEDIR.TAG", _CACHEDIR_TAG.encode())
    if ref:
        _write_ref(repo, ref, commit)
    return commit


def read_ref(cache_dir, repo_id: str, ref: str = "main") -> str:
    """The commit ``refs/<ref>`` of ``repo_id`` points at in ``cache_dir``."""
    path = repo_folder(cache_dir, repo_id) / "refs" / ref
    if not path.is_file():
        raise FileNotFoundError(f"{repo_id} has no ref {ref!r} in {cache_dir}: add a commit with add_commit first.")
    return path.read_text().strip()


def record_revisions(folder, base_model: str, base_revision: str, adapter: str | None = None,
                     adapter_revision: str | None = None) -> Path:
    """Write which commits a saved adapter was made from, next to its ``adapter_config.json``; return the file.

    peft keeps one revision, the base model's, in the config's ``revision`` field, and only when it was given to
    ``get_peft_model(..., revision=...)``; the adapter's own commit (``PeftModel.from_pretrained(..., revision=)``)
    is kept nowhere. This writes ``base_model`` and ``base_revision`` into the config's ``base_model_name_or_path``
    and ``revision`` (``AutoPeftModel`` loads that base at that commit), and both pairs to ``revisions.json``:
    ``{"base_model": {"repo_id": ..., "revision": ...}, "adapter": {...}}``, the adapter's only when given (the
    Hub repo and commit it was loaded from). Revisions must be commits (40 hex digits), not branches.
    """
    folder = Path(folder)
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"{folder} has no {CONFIG_FILE}: pass the folder of a saved adapter.")
    pairs = {"base_model": (base_model, base_revision)}
    if adapter is not None or adapter_revision is not None:
        pairs["adapter"] = (adapter, adapter_revision)
    for role, (repo_id, revision) in pairs.items():
        repo_folder(".", repo_id)  # validates the id
        if not (isinstance(revision, str) and _COMMIT.match(revision)):
            raise ValueError(f"the {role} revision {revision!r} is not a commit hash (40 hex digits): pin the commit, "
                             "not a branch such as 'main', which moves.")
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"], config["revision"] = base_model, base_revision
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    record = {role: {"repo_id": repo_id, "revision": revision} for role, (repo_id, revision) in pairs.items()}
    path = folder / REVISIONS_FILE
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
