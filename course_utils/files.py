"""Looking inside a saved folder without loading it: file sizes and the safetensors header.

Defined in lesson 1 (``list_files``, ``read_safetensors_header``); ``diagnose`` reuses the header reader.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

# A header larger than this is not one peft or transformers would write; refuse to read it.
MAX_HEADER_BYTES = 100 * 1024 * 1024


def list_files(folder: str | Path) -> dict[str, int]:
    """``{relative path: size in bytes}`` for every file under ``folder``, sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder: check the path (or run the cell that saves it first).")
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def read_safetensors_header(path: str | Path) -> dict:
    """The JSON header of a ``.safetensors`` file (tensor names -> dtype, shape, offsets), weights untouched.

    The format is an 8-byte little-endian header length, then that many bytes of JSON. Whatever the
    bytes claim, this reads at most the file's size and raises ``ValueError`` with one line if the file is
    not a valid safetensors file.
    """
    path = Path(path)
    size = path.stat().st_size
    if size < 8:
        raise ValueError(f"{path.name} is {size} bytes: too short to be a safetensors file (empty or truncated).")
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length == 0 or length > min(size - 8, MAX_HEADER_BYTES):
            raise ValueError(f"{path.name} claims a {length}-byte header but the file has {size} bytes: "
                             "it is truncated or not a safetensors file.")
        raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"{path.name} has a header that is not JSON: it is not a safetensors file.") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path.name} has a header that is not a JSON object: it is not a safetensors file.")
    data_len = size - 8 - length
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data_len):
            raise ValueError(f"{path.name}: tensor {name!r} points outside the file ({offsets}): the file is truncated.")
    return header


def tensor_table(path: str | Path) -> list[tuple[str, str, tuple[int, ...]]]:
    """``(name, dtype, shape)`` for each tensor in a safetensors file, from its header alone."""
    header = read_safetensors_header(path)
    return [(k, v["dtype"], tuple(v["shape"])) for k, v in sorted(header.items()) if k != "__metadata__"]
