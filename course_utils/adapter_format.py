"""The saved-adapter format in one place: file names, tensor key names, target matching, layer shapes,
and the safetensors header, all read without torch or peft.

Defined in lesson 1 (``read_safetensors_header``); ``files``, ``storage``, ``diagnosis``, ``safe_ops`` and the
exercise checks use these instead of spelling the format out again.
"""
from __future__ import annotations

import json
import re
import struct
from pathlib import Path

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PICKLE_WEIGHTS_FILE = "adapter_model.bin"

# A header larger than this is not one peft or transformers would write; refuse to read it.
MAX_HEADER_BYTES = 100 * 1024 * 1024

# ``base_model.model.<module path>.lora_A.weight`` (peft's saved keys; the adapter name is stripped on save).
LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?:embedding_)?(?P<ab>[AB])(?:\.[^.]+)?(?:\.weight)?$")


# The attributes under which peft's LoRA layers keep their tensors (``LoraLayer.adapter_layer_names``), and the
# matrix each holds; DoRA's magnitude vector is neither A nor B.
LORA_PARTS = {"lora_A": "A", "lora_B": "B", "lora_embedding_A": "A", "lora_embedding_B": "B",
              "lora_magnitude_vector": None}


def is_lora_name(name: str, matrix: str | None = None) -> bool:
    """Whether a parameter, state-dict or saved-tensor name belongs to a LoRA adapter, as opposed to the base model.

    Lesson 1 teaches the rule: LoRA adds two small matrices, ``lora_A`` and ``lora_B``, next to each chosen layer,
    so their names have a ``lora_A`` or ``lora_B`` part (``...c_attn.lora_B.default.weight`` in a model,
    ``...c_attn.lora_B.weight`` in a saved file; ``lora_embedding_A`` / ``_B`` for an embedding, DoRA's
    ``lora_magnitude_vector``). With ``matrix="A"`` or ``"B"``, only that matrix's names count.
    """
    return any(part in LORA_PARTS and (matrix is None or LORA_PARTS[part] == matrix) for part in name.split("."))


def split_lora_key(key: str) -> tuple[str, str] | None:
    """``(module path, "A" or "B")`` for a LoRA tensor key, else ``None``."""
    m = LORA_KEY.match(key)
    return (m["module"], m["ab"]) if m else None


def matches_target(module: str, targets) -> bool:
    """Whether ``target_modules`` selects ``module``, by peft's rule.

    A list matches a full module name or a dotted suffix (``c_attn`` matches ``transformer.h.0.attn.c_attn``);
    a string is a regular expression matched against the whole name (``"all-linear"`` matches everything);
    ``None`` (not set) matches everything.
    """
    if targets is None:
        return True
    if isinstance(targets, str):
        if targets.lower() == "all-linear":
            return True
        try:
            return re.fullmatch(targets, module) is not None
        except re.error:
            return True  # peft fails on the same regex: reported where the config is checked
    if not isinstance(targets, (list, tuple, set, frozenset)):
        return True  # not a form peft accepts: reported where the config is checked
    return any(isinstance(t, str) and (module == t or module.endswith(f".{t}")) for t in targets)


def unmatched_targets(targets, module_names) -> list[str]:
    """The entries of a ``target_modules`` list that select none of ``module_names``."""
    names = list(module_names)
    return [t for t in targets if isinstance(t, str) and not any(matches_target(n, [t]) for n in names)]


def in_out_features(module) -> tuple[int, int] | None:
    """``(in, out)`` features of a layer LoRA can wrap: Linear, GPT-2's Conv1D or an Embedding, else ``None``.

    A layer peft already wrapped is measured through its ``base_layer``. Works on the meta device too.
    """
    module = getattr(module, "base_layer", module)
    weight = getattr(module, "weight", None)
    if type(module).__name__ == "Conv1D" and weight is not None and weight.dim() == 2:
        return int(weight.shape[0]), int(weight.shape[1])  # GPT-2's transposed linear layer: (in, out)
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return int(module.in_features), int(module.out_features)
    if hasattr(module, "num_embeddings") and hasattr(module, "embedding_dim"):
        return int(module.num_embeddings), int(module.embedding_dim)
    return None


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
    for name, info in tensor_entries(header).items():
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data_len):
            raise ValueError(f"{path.name}: tensor {name!r} points outside the file ({offsets}): the file is truncated.")
    return header


def tensor_entries(header: dict) -> dict:
    """The header without its ``__metadata__`` entry: ``{tensor name: {dtype, shape, data_offsets}}``."""
    return {k: v for k, v in header.items() if k != "__metadata__"}
