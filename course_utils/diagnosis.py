"""``diagnose(path)``: what is wrong with an adapter folder, one line per problem: what, the evidence, where to read.

Defined in lesson 3 (``diagnose``, ``python -m course_utils diagnose PATH [--base MODEL]``); lessons 6 to 9 add the
failures of training and shipping: empty (ZeRO-3) saves, settings from a newer peft, embeddings saved for added
tokens, classification heads, renamed module paths; lesson 2 a recorded base this machine cannot load, lesson 11
a ``torch.compile``d model's keys (``diagnosis_provenance``).

A finding names the problem, the evidence (which file, which names or shapes disagree) and where to read about it
(a lesson section and a peft or transformers documentation page), never the code of the fix: see
``diagnosis_report``. This module checks the folder itself; ``diagnosis_files`` checks the config and the weights
file, ``diagnosis_base`` the fit with a base model.

Without a base model it reads only ``adapter_config.json`` and the safetensors *header* (no torch, no
peft import, nothing loaded or unpickled), so it answers in a fraction of a second. With ``base_model``
it also builds the base model's skeleton on the ``meta`` device (no weights read) through transformers,
to check that the adapter's target modules exist there and that its tensors fit them.
It never writes to the folder and never raises: every finding, even an unexpected one, is a line.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from . import diagnosis_report as read
from .adapter_format import CONFIG_FILE, PICKLE_WEIGHTS_FILE, WEIGHTS_FILE, tensor_entries
from .diagnosis_base import check_base, resolve_base
from .diagnosis_files import (
    LORA_LIKE,
    check_config_fields,
    check_head_saved,
    check_lora_tensors,
    check_not_empty,
    read_config,
    read_weights_header,
)
from .diagnosis_provenance import check_compiled_keys, check_recorded_base
from .diagnosis_report import Reading, finding
from .messages import one_line

INTERNAL_ERROR = "diagnose hit an unexpected error"


@dataclass
class Diagnosis:
    """The result of ``diagnose``: ``ok``, the ``problems`` (one line each: what, the evidence, where to read)
    and a ``summary`` when there is none."""

    path: str
    problems: list[str] = field(default_factory=list)
    summary: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, text: str, reading: Reading) -> None:
        """Add a finding: the problem and its evidence (``text``), then where to read (``reading``)."""
        self.problems.append(finding(text, reading))

    def __str__(self) -> str:
        if self.ok:
            return self.summary
        head = f"{self.path}: {len(self.problems)} problem{'s' if len(self.problems) > 1 else ''} found"
        return "\n".join([head] + [f"  - {p}" for p in self.problems])


def _listing(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return sorted(it, key=lambda e: e.name)


def _is_full_model(names) -> bool:
    names = set(names)
    return "config.json" in names and ("model.safetensors" in names or "model.safetensors.index.json" in names
                                       or "pytorch_model.bin" in names)


def diagnose(path, base_model: str | None = None) -> Diagnosis:
    """Check an adapter folder without loading it; see the module docstring. Never raises, never writes."""
    d = Diagnosis(str(path))
    try:
        _diagnose(Path(path), str(path), base_model, d)
    except Exception as exc:  # a bug here must still be one line, not a traceback
        d.add(f"{INTERNAL_ERROR} ({one_line(exc)}): the folder was not changed; please report this to the course",
              read.DIAGNOSE)
    return d


def _diagnose(p: Path, shown: str, base_model, d: Diagnosis) -> None:
    entries = _folder_entries(p, shown, d)
    if entries is None:
        return
    files = {e.name: e for e in entries if e.is_file()}
    subdirs = [e.name for e in entries if e.is_dir() and (Path(e.path) / CONFIG_FILE).is_file()]
    if CONFIG_FILE not in files:
        _not_an_adapter(p, shown, entries, files, subdirs, base_model, d)
        return
    leftover = _check_full_model(p, shown, files, d)
    config = read_config(p / CONFIG_FILE, d)
    peft_type = check_config_fields(config, d) if config is not None else None
    if config is not None and not leftover:
        check_recorded_base(config, d)
    header = _weights_header(p, shown, files, leftover, d)
    if header is not None:
        check_compiled_keys(header, d)
    lora = None
    has_tensors = header is not None and check_not_empty(header, files[WEIGHTS_FILE].stat().st_size, d)
    if has_tensors and config is not None and peft_type in LORA_LIKE:
        lora = check_lora_tensors(config, header, d)
        if lora:
            check_head_saved(config, lora, d)
    if base_model is not None and lora and not leftover:
        check_base(config, lora, base_model, d)
    if d.ok:
        d.summary = _summary(shown, config, header, files, subdirs, base_model, lora)


def _folder_entries(p: Path, shown: str, d: Diagnosis) -> list | None:
    """The folder's entries, or None (and a finding) when ``p`` is no readable folder."""
    try:
        exists, is_dir = p.exists(), p.is_dir()
    except OSError as exc:
        d.add(f"{shown} cannot be checked ({one_line(exc)}): the path, or your permissions on its parent folder, "
              "stop it", read.DIAGNOSE)
        return None
    if not exists:
        d.add(f"{shown} does not exist: a typo in the path, or the cell that saves the adapter has not run yet",
              read.ERRORS)
        return None
    if not is_dir:
        hint = f" (for this file, that is {p.parent})" if p.name in (CONFIG_FILE, WEIGHTS_FILE, PICKLE_WEIGHTS_FILE) else ""
        d.add(f"{shown} is a file, not a folder: an adapter is the folder that holds adapter_config.json{hint}",
              read.SAVED_FILES)
        return None
    try:
        return _listing(p)
    except OSError as exc:
        d.add(f"{shown} cannot be read ({one_line(exc)}): your permissions on the folder stop it", read.DIAGNOSE)
        return None


def _not_an_adapter(p: Path, shown: str, entries: list, files: dict, subdirs: list, base_model, d: Diagnosis) -> None:
    """Findings for a folder without adapter_config.json: several adapters, a full model, nothing, or other files."""
    if subdirs:
        d.add(f"{shown} has no adapter_config.json but holds {len(subdirs)} adapter(s) in subfolders "
              f"({', '.join(subdirs)}): a multi-adapter save, in which each subfolder (e.g. {p / subdirs[0]}) is an "
              "adapter folder of its own", read.MULTI_ADAPTER)
        for name in subdirs:
            sub = diagnose(p / name, base_model)
            d.problems += [f"in subfolder {name}: {line}" for line in sub.problems]
    elif _is_full_model(files):
        d.add(f"{shown} holds a full model (config.json + model weights, no adapter_config.json), e.g. one saved after "
              "merge_and_unload, not an adapter: there is no adapter here for peft to load", read.ADAPTER_ONLY)
    elif not entries:
        d.add(f"{shown} is an empty folder: nothing was saved there", read.SAVED_FILES)
    else:
        shown_files = ", ".join(e.name for e in entries[:6]) + (", ..." if len(entries) > 6 else "")
        d.add(f"{shown} has no adapter_config.json, so it is not a saved adapter (it holds: {shown_files})",
              read.SAVED_FILES)


def _check_full_model(p: Path, shown: str, files: dict, d: Diagnosis) -> bool:
    """Findings for an adapter folder that also holds a full model; True when the adapter's weights are gone."""
    if not _is_full_model(files):
        return False
    leftover = WEIGHTS_FILE not in files and PICKLE_WEIGHTS_FILE not in files
    if leftover:
        d.add(f"{shown} holds a merged full model (config.json + model.safetensors) and an adapter_config.json "
              f"({p / CONFIG_FILE}) left from an adapter save, so loaders take the folder for an adapter",
              read.ADAPTER_ONLY)
    else:
        d.add(f"{shown} holds both an adapter (adapter_config.json + weights) and a full model (config.json + "
              "model.safetensors), e.g. a merged model saved over the adapter's folder, and loaders take it for the "
              "adapter", read.ADAPTER_ONLY)
    return leftover


def _weights_header(p: Path, shown: str, files: dict, leftover: bool, d: Diagnosis) -> dict | None:
    """The safetensors header, or None (and a finding unless the folder is a merged model) when there is none."""
    if WEIGHTS_FILE in files:
        return read_weights_header(p / WEIGHTS_FILE, d)
    if PICKLE_WEIGHTS_FILE in files:
        size = files[PICKLE_WEIGHTS_FILE].stat().st_size
        d.add(f"{shown} has only adapter_model.bin ({size:,} bytes{', empty' if size == 0 else ''}), a pickle file, "
              "and unpickling a file can run code", read.PICKLE)
    elif not leftover:
        d.add(f"{shown} has adapter_config.json but no adapter_model.safetensors: the save was interrupted or only the "
              "config was written (LoraConfig.save_pretrained writes no weights), and peft reports this case as a "
              "confusing 'Repo id must be in the form' error", read.ERRORS)
    return None


def _summary(shown, config, header, files, subdirs, base_model, lora) -> str:
    lines = [f"{shown}: no problem found"]
    if config is not None:
        lines.append(f"  peft type:      {config.get('peft_type')}")
        if "r" in config:
            alpha = f" (lora_alpha {config['lora_alpha']})" if "lora_alpha" in config else ""
            lines.append(f"  rank:           r={config['r']}{alpha}")
        tm = config.get("target_modules")
        if tm is not None:
            lines.append(f"  target modules: {', '.join(sorted(tm)) if isinstance(tm, list) else tm}")
    if header is not None:
        tensors = tensor_entries(header)
        dtypes = sorted({v["dtype"] for v in tensors.values()})
        size = files[WEIGHTS_FILE].stat().st_size
        lines.append(f"  tensors:        {len(tensors)} in {WEIGHTS_FILE} ({size:,} bytes), dtype {', '.join(dtypes) or '-'}")
    if base_model is not None and lora:
        lines.append(f"  base model:     {resolve_base(base_model)}: all {len(lora.modules)} adapted modules exist "
                     "and every tensor fits them")
    if subdirs:
        lines.append(f"  also:           {len(subdirs)} adapter(s) in subfolders ({', '.join(subdirs)})")
    return "\n".join(lines)
