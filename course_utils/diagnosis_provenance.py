"""``diagnose``'s checks of where an adapter came from: the base model its config records, and the key prefix a
``torch.compile``d model leaves in the weights file.

The recorded base (``base_model_name_or_path``) is what transformers loads when it is given the adapter folder as a
model (lesson 2, section 4). It must name a folder that exists here, or a Hub model this machine can reach; a Hub
model should be pinned with ``revision``. Nothing is downloaded: the Hub is never asked, only the local Hugging Face
cache is looked at, and only when the name is not a local folder. Defined in lesson 2 (the recorded base) and lesson
11 (the ``_orig_mod.`` prefix).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from . import diagnosis_report as read
from .adapter_format import tensor_entries
from .assets import SHIPPED_BASE_ID

COMPILED_PREFIX = "_orig_mod."
OFFLINE_VALUES = {"1", "ON", "YES", "TRUE"}
# A Hub model id: "name" or "owner/name", letters, digits and - _ . only.
HUB_ID = re.compile(r"[\w.-]+(?:/[\w.-]+)?")
ALTERNATIVE = "or load that base yourself and put the adapter on it with peft"


def looks_local(name: str) -> bool:
    """True when ``name`` can only be a folder: absolute, ``./``, ``../``, ``~``, a drive or more than one ``/``."""
    return (os.path.isabs(name) or name.startswith(("./", "../", "~", ".\\", "..\\")) or "\\" in name
            or re.match(r"[A-Za-z]:", name) is not None or name.count("/") > 1)


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in OFFLINE_VALUES


def in_hub_cache(repo_id: str) -> bool:
    """True when the local Hugging Face cache holds a ``config.json`` of ``repo_id`` (any revision); no network."""
    # Imported here: it costs a few tenths of a second, and only a recorded Hub id needs it.
    from huggingface_hub.constants import HF_HUB_CACHE

    snapshots = Path(HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    try:
        return any((s / "config.json").is_file() for s in snapshots.iterdir())
    except OSError:
        return False


def check_recorded_base(config: dict, d) -> None:
    """Findings when ``base_model_name_or_path`` names no base this machine can load, or an unpinned Hub model."""
    name = config.get("base_model_name_or_path")
    if name is None or (isinstance(name, str) and not name.strip()):
        how = "is missing" if "base_model_name_or_path" not in config else f"is {name!r}"
        d.add(f"adapter_config.json records no base model (base_model_name_or_path {how}), so transformers cannot "
              "load this folder as a model on its own: write the base the adapter was trained on (a local folder or "
              f"a Hub id) into that field, {ALTERNATIVE}", read.RECORDED_BASE)
        return
    if not isinstance(name, str):
        d.add(f"adapter_config.json has base_model_name_or_path {str(name)[:60]}, which is not a folder or a Hub id: "
              f"write the base the adapter was trained on into that field, {ALTERNATIVE}", read.RECORDED_BASE)
        return
    if Path(name).expanduser().is_dir():
        return
    if name == SHIPPED_BASE_ID:
        d.add(f"base_model_name_or_path is {name!r}, the placeholder the course's shipped adapter files record for the "
              "course's own model, which is no folder and no Hub model: take the shipped adapters from the course's "
              "shipped_adapter helper, whose copy records this machine's course model, or point the field at that "
              f"model's folder, {ALTERNATIVE}", read.RECORDED_BASE)
        return
    if looks_local(name) or not HUB_ID.fullmatch(name):
        d.add(f"base_model_name_or_path is the folder {name!r}, which does not exist on this machine (the adapter was "
              "saved where its base lived on another machine, or the base has moved): point that field at this "
              f"machine's copy of the same base, {ALTERNATIVE}", read.RECORDED_BASE)
        return
    if offline() and not in_hub_cache(name):
        d.add(f"base_model_name_or_path is {name!r}, which is neither a folder here nor a model in the local Hugging "
              "Face cache, and this machine is offline (HF_HUB_OFFLINE is set): download that model while online, "
              f"or point the field at a local copy of it, {ALTERNATIVE}", read.RECORDED_BASE)
    if config.get("revision") in (None, ""):
        d.add(f"base_model_name_or_path names the Hub model {name!r} but no revision is recorded, so a later push "
              "to that model changes the base under the adapter: pin the revision the adapter was trained on (its "
              "commit hash) in the revision field", read.BASE_REVISION)


def check_compiled_keys(header: dict, d) -> None:
    """A finding when tensor names carry ``_orig_mod.``: the weights come from a ``torch.compile`` wrapper."""
    keys = sorted(k for k in tensor_entries(header) if k.startswith(COMPILED_PREFIX) or f".{COMPILED_PREFIX}" in k)
    if keys:
        d.add(f"{len(keys)} tensor name(s) in adapter_model.safetensors carry the prefix {COMPILED_PREFIX!r} (e.g. "
              f"{keys[0]!r}): they were saved from a torch.compile wrapper, and peft matches none of them, so the "
              "adapter would load as untrained; save again from the model inside the wrapper (its _orig_mod), or "
              "strip the prefix from every key", read.COMPILED)
