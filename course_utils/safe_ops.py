"""Saving and merging without losing work: atomic saves, merges that keep the adapters, safe ``.bin`` loading,
and repointing an adapter at its base model.

Defined in lesson 3 (``safe_save``, ``merge_to_folder``, ``load_bin_adapter_weights``) and lesson 2, section 4
(``set_base_model``).

``safe_save`` writes into a hidden stage folder beside the target and renames it into place only once
``save_pretrained`` has returned (``folders.staged_folder``).
"""
from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import torch

from .adapter_format import CONFIG_FILE, PICKLE_WEIGHTS_FILE
from .folders import ASIDE, STAGE, siblings, staged_folder


def _non_empty(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())


def _recover(folder: Path) -> None:
    """Undo what a killed ``safe_save`` left: put a moved-aside old folder back, delete half-written stages."""
    old = [p for p in siblings(folder, ASIDE) if p.is_dir()]
    if old and not folder.exists():
        os.rename(old[-1], folder)  # killed between moving the old folder aside and renaming the new one in
        old = old[:-1]
    for stale in old + siblings(folder, STAGE):
        shutil.rmtree(stale, ignore_errors=True)


def safe_save(model, folder, overwrite: bool = False, **save_pretrained_kwargs) -> Path:
    """``model.save_pretrained(folder, ...)`` that never leaves a half-written folder or destroys the old one.

    Refuses a non-empty ``folder`` unless ``overwrite=True``. Saves into a hidden stage folder, then
    renames it into place (``folders.staged_folder``); with ``overwrite=True`` the old folder is moved aside
    first and deleted only after the rename succeeded (and put back if it failed). Returns the folder.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} is a file, not a folder: choose another folder name to save into.")
    _recover(folder)
    if _non_empty(folder) and not overwrite:
        raise FileExistsError(f"{folder} is not empty: pass overwrite=True to replace it, or choose a new folder.")
    with staged_folder(folder, replace=overwrite) as stage:
        model.save_pretrained(str(stage), **save_pretrained_kwargs)
        if not any(stage.iterdir()):
            raise RuntimeError(f"save_pretrained wrote nothing for {folder}: the model is not one that can be saved.")
    return folder


def merge_to_folder(peft_model, merged_dir, adapters_dir) -> Path:
    """Keep every adapter, then write the merged full model to its own clean folder; returns ``merged_dir``.

    1. ``safe_save`` saves all adapters of ``peft_model`` to ``adapters_dir`` (names other than ``default``
       go to subfolders, as ``PeftModel.save_pretrained`` does).
    2. A deep copy of the model (so ``peft_model`` stays unmerged and usable; it costs a second copy in
       memory) merges its active adapter(s) with ``merge_and_unload()``.
    3. The merged model is saved to ``merged_dir``, which must be empty or new, with no adapter_config.json.
    """
    merged_dir, adapters_dir = Path(merged_dir), Path(adapters_dir)
    if not (hasattr(peft_model, "peft_config") and hasattr(peft_model, "merge_and_unload")):
        raise TypeError(f"merge_to_folder needs a PeftModel, got {type(peft_model).__name__}: wrap the base with "
                        "PeftModel.from_pretrained(base, adapter_folder) first.")
    a, m = merged_dir.resolve(), adapters_dir.resolve()
    if a == m or a in m.parents or m in a.parents:
        raise ValueError(f"merged_dir {merged_dir} and adapters_dir {adapters_dir} overlap: use two separate folders.")
    for folder, role in ((merged_dir, "merged_dir"), (adapters_dir, "adapters_dir")):
        if _non_empty(folder) or (folder.exists() and not folder.is_dir()):
            raise FileExistsError(f"{role} {folder} is not empty: choose a new folder (nothing was written).")
    if any(getattr(module, "merged", False) is True for module in peft_model.modules()):
        raise ValueError("the model has adapter weights merged in (merge_adapter() was called): call "
                         "unmerge_adapter() first, so the saved adapters and the merge are both right.")
    safe_save(peft_model, adapters_dir)
    merged = copy.deepcopy(peft_model).merge_and_unload()
    safe_save(merged, merged_dir)
    if (merged_dir / CONFIG_FILE).exists():  # never leave a folder that loaders would take for an adapter
        (merged_dir / CONFIG_FILE).unlink()
    return merged_dir


def load_bin_adapter_weights(path) -> dict:
    """Tensors of an ``adapter_model.bin`` (a pickle), loaded only with ``torch.load(weights_only=True)``.

    ``path`` is the file or the adapter folder. Raises a one-line error if the file is missing or holds
    anything but tensors (a pickle that could run code is refused, never executed).
    """
    path = Path(path)
    if path.is_dir():
        path = path / PICKLE_WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: pass the adapter folder or its adapter_model.bin file.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path.name} was refused by torch.load(weights_only=True) ({type(exc).__name__}): it is corrupted "
                         "or holds objects that could run code; do not load it with weights_only=False unless you "
                         "trust its source, ask for adapter_model.safetensors instead.") from None
    if not (isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise ValueError(f"{path.name} holds a {type(state).__name__}, not a dict of tensors: it is not an adapter's "
                         "weights file.")
    return state


BACKUP_SUFFIX = ".bak"


def _shown(value) -> str:
    """``repr(value)`` for a printed line; an absolute path relative to the working folder, so no machine path shows."""
    if isinstance(value, str) and value and Path(value).is_absolute():
        try:
            return repr(os.path.relpath(value))
        except ValueError:  # another drive (Windows)
            pass
    return repr(value)


def set_base_model(folder, base, revision: str | None = None) -> Path | None:
    """Rewrite ``base_model_name_or_path`` in ``folder``'s adapter_config.json to ``base``, keeping a backup.

    ``base`` is a local model folder (recorded as its absolute path; it must hold ``config.json``) or a Hub id
    (then pass the ``revision`` the adapter was trained on, which is recorded too). The old config is first copied
    to ``adapter_config.json.bak``; an existing backup is never overwritten (``FileExistsError``: move it away
    first). The new config is written in one rename. Prints one line: the old value, the new one, the backup.
    Returns the backup's path (``None`` when the config already records ``base``; nothing is written then).
    """
    folder = Path(folder)
    config_file, backup = folder / CONFIG_FILE, folder / (CONFIG_FILE + BACKUP_SUFFIX)
    if not config_file.is_file():
        raise FileNotFoundError(f"no {CONFIG_FILE} in {folder}: give the adapter folder that save_pretrained wrote.")
    base = str(base)
    local = Path(base).expanduser()
    if not base.strip():
        raise ValueError("base is empty: give the base model's folder or its Hub id.")
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ValueError(f"{base} holds no config.json, so it is not a saved model: give the base model's folder.")
        base = str(local.resolve())
    config = json.loads(config_file.read_text(encoding="utf-8"))
    old = config.get("base_model_name_or_path")
    new = config | {"base_model_name_or_path": base} | ({"revision": revision} if revision is not None else {})
    if new == config:
        print(f"{folder}: base_model_name_or_path already is {_shown(base)}; nothing changed")
        return None
    if backup.exists():
        raise FileExistsError(f"{backup} already exists (an earlier repair's backup): move it away first, so that "
                              "the original config is kept.")
    shutil.copy2(config_file, backup)
    stage = folder / f".{CONFIG_FILE}.saving"
    stage.write_text(json.dumps(new, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(stage, config_file)
    pinned = f", revision {revision!r}" if revision is not None else ""
    print(f"{folder}: base_model_name_or_path {old!r} -> {_shown(base)}{pinned} (old config: {backup.name})")
    return backup
