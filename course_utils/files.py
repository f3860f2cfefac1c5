"""Looking inside a saved folder without loading it: file sizes and the safetensors header.

Defined in lesson 1 (``list_files``, ``tensor_table``); the header reader lives in ``adapter_format``.
"""
from __future__ import annotations

from pathlib import Path

from .adapter_format import read_safetensors_header, tensor_entries


def list_files(folder: str | Path) -> dict[str, int]:
    """``{relative path: size in bytes}`` for every file under ``folder``, sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder: check the path (or run the cell that saves it first).")
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def tensor_table(path: str | Path) -> list[tuple[str, str, tuple[int, ...]]]:
    """``(name, dtype, shape)`` for each tensor in a safetensors file, from its header alone."""
    entries = tensor_entries(read_safetensors_header(path))
    return [(k, v["dtype"], tuple(v["shape"])) for k, v in sorted(entries.items())]
