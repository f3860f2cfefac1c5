"""What every exercise's checks share: the registry entry, the one-line failure, and the judging helpers.

A judge runs in the trusted checker on an ``Evidence`` (``grading/evidence.py``): the models it sees were rebuilt
by the checker from the saved tensors, the folders are copies taken when the check cell ran, and the reference
models come from the course's own seeded recipes, never from the learner's kernel. A judge returns the detail of
its ✓ line or raises ``Wrong`` with the ✗ line. Used by ``ex01.py`` ... ``ex11.py``.
"""
from __future__ import annotations

import operator
import re
import secrets
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache, wraps
from pathlib import Path

import numpy as np
import torch
from peft import PeftModel, get_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file

from ...adapter_format import CONFIG_FILE, PICKLE_WEIGHTS_FILE, WEIGHTS_FILE, is_lora_name
from ...files import list_files
from ...models import load_base_model, load_tokenizer
from ...roundtrip import compare_logits, logits_of, sample_batch
from ...shipped import shipped_adapter
from ..evidence import Evidence, Opaque, type_name

# Answers that name a folder: a str passed for one of these is a path, and the folder is copied as evidence.
PATH_ANSWERS = frozenset({"folder", "shared", "saved_root", "repaired", "combo_folder", "checkpoint"})


class Wrong(Exception):
    """Raised by a judge with the line the learner sees (after ``✗ <id>: ``)."""


@dataclass(frozen=True)
class Question:
    """One graded question: its id, points, the answers the learner writes, the other names its check cell
    passes (given objects and folders, exported for identity and provenance), the judge, and an optional probe
    that runs a function answer in the learner's kernel and returns plain data and models as evidence."""
    check_id: str
    points: int
    answers: tuple[str, ...]
    judge: Callable[[Evidence], str]
    context: tuple[str, ...] = ()
    probe: Callable[[dict], dict] | None = field(default=None)
    folders: tuple[str, ...] = ()   # more names (besides PATH_ANSWERS) whose values are folders to copy

    @property
    def paths(self) -> frozenset[str]:
        """The names whose values are folders (a str there is a path)."""
        return frozenset(n for n in (*self.answers, *self.context) if n in PATH_ANSWERS or n in self.folders)


def require(condition, message: str) -> None:
    if not condition:
        raise Wrong(message)


def peft_model(ev: Evidence, name: str):
    """The rebuilt PeftModel answer ``name``; anything else fails with its type."""
    obj = ev.value(name)
    require(isinstance(obj, PeftModel), f"`{name}` is a {type_name(obj)}, not a PeftModel "
                                        "(a base model with a LoRA adapter).")
    return obj


def notebook_type(value, name: str) -> None:
    """Fail when ``value`` is an object of a type the notebook made (an always-equal str, a fake model)."""
    if isinstance(value, Opaque) and value.foreign:
        raise Wrong(f"`{name}` is a {value.type_name}, a type the notebook made: answers must be the real objects "
                    "(numbers, strings, lists, paths, models).")


def whole_number(value, name: str) -> int:
    """``value`` as an int: Python, NumPy and torch integers pass; bool, float, str and look-alikes do not."""
    notebook_type(value, name)
    require(not isinstance(value, (bool, np.bool_)), f"`{name}` should be a whole number, not a bool.")
    try:
        return operator.index(value)
    except TypeError:
        raise Wrong(f"`{name}` should be a whole number (an int), not a {type_name(value)}.") from None


def name_list(value, name: str) -> list[str]:
    """A list, tuple or set of strings (or paths), as strings; anything else is rejected by type."""
    notebook_type(value, name)
    require(isinstance(value, (list, tuple, set, frozenset)),
            f"`{name}` should be a list of names, not a {type_name(value)}.")
    require(all(isinstance(v, (str, Path)) for v in value), f"`{name}` should hold names (strings).")
    return [str(v) for v in value]


@lru_cache(maxsize=1)
def tokenizer():
    return load_tokenizer()


def layer_state_problem(model, what: str) -> str | None:
    """Why ``model``'s LoRA layers do not compute their adapters as loaded: switched off, or a scale changed."""
    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    if any(m.disable_adapters for m in layers):
        return (f"{what} has its LoRA layers switched off (disable_adapter_layers / disable_adapters): it computes "
                "the base model; switch them back on (lesson 3, the `disable_adapter` context does it for you).")
    for m in layers:
        for adapter, value in m.scaling.items():
            alpha, r = m.lora_alpha.get(adapter), m.r.get(adapter)
            rs = m.use_rslora.get(adapter, False) if isinstance(m.use_rslora, dict) else False
            expected = alpha / (r ** 0.5 if rs else r) if alpha is not None and r else None
            if expected is not None and abs(value - expected) > 1e-6 * max(1.0, abs(expected)):
                return (f"{what}'s adapter {adapter!r} is scaled by {value:g}, not by lora_alpha/r = {expected:g} "
                        "as loaded (set_scale changed it).")
    return None


def same_logits(reference, candidate, what: str, atol: float = 1e-5, batch=None) -> str:
    problem = layer_state_problem(candidate, what)
    require(problem is None, problem or "")
    result = compare_logits(reference, candidate, tokenizer(), atol=atol, batch=batch)
    require(result.ok, f"{what} gives different logits (max |difference| {result.max_abs_diff:.1e}, "
                       f"allowed {atol:g}): its weights are not the ones expected.")
    return f"logits match the reference (max |difference| {result.max_abs_diff:.1e}, allowed {atol:g})"


def lora_leaf_names(model) -> dict[str, int]:
    """``{leaf module name: count}`` of the modules carrying LoRA layers."""
    counts: dict[str, int] = {}
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            leaf = name.rsplit(".", 1)[-1]
            counts[leaf] = counts.get(leaf, 0) + 1
    return counts


def adapter_effect(model) -> float:
    """How much the active adapter changes the logits (0 when its LoRA B matrices are zero)."""
    batch = sample_batch(tokenizer())
    with_adapter = logits_of(model, batch)
    with model.disable_adapter():
        without = logits_of(model, batch)
    return float((with_adapter - without).abs().max())


def folder(ev: Evidence, name: str) -> Path:
    """The copy of the folder answer ``name``, taken when the check cell ran."""
    value = ev.value(name)
    notebook_type(value, name)
    require(isinstance(value, Path), f"`{name}` should be the folder's path (a str or Path), not a "
                                     f"{type_name(value)}.")
    require(value.is_dir(), f"nothing was saved at {ev.original(name)!r}: run the cell that saves, and pass "
                            "that folder.")
    return value


def adapter_folder(path: Path) -> None:
    """Fail unless ``path`` holds an adapter saved at its root in the default safetensors format."""
    files = list_files(path)
    require(files, f"{path.name} is empty: nothing was saved there.")
    if CONFIG_FILE not in files:
        nested = sorted({f.split("/")[0] for f in files if f.endswith("/" + CONFIG_FILE)})
        if nested:
            raise Wrong(f"the adapter sits in a subfolder ({', '.join(nested)}/), not at the folder's root: "
                        "an adapter saved under a name other than 'default' goes into a subfolder.")
        if "config.json" in files:
            raise Wrong("the folder holds a full model (config.json), not an adapter: save the PeftModel.")
        raise Wrong(f"no {CONFIG_FILE} in the folder (it holds {', '.join(files)}).")
    if WEIGHTS_FILE not in files and PICKLE_WEIGHTS_FILE not in files:
        other = [f for f in files if f.startswith("adapter_model")]
        raise Wrong(f"no {WEIGHTS_FILE} in the folder (found {', '.join(other) or 'no weights'}).")


def weights_of(path: Path) -> dict:
    """The tensors of the adapter saved in ``path`` (safetensors, else the pickle-free ``.bin``)."""
    if (path / WEIGHTS_FILE).is_file():
        return load_file(str(path / WEIGHTS_FILE))
    return torch.load(path / PICKLE_WEIGHTS_FILE, map_location="cpu", weights_only=True)


def reload(path, **kwargs):
    """The adapter in ``path`` on a fresh course base model, loaded by the checker."""
    return PeftModel.from_pretrained(load_base_model(), str(path), **kwargs)


@lru_cache(maxsize=4)
def shipped(name: str):
    return reload(shipped_adapter(name))


def holds(model, adapter: str, weights: dict) -> bool:
    """Whether the adapter ``adapter`` of ``model`` holds exactly the tensors ``weights``."""
    if adapter not in getattr(model, "peft_config", {}):
        return False
    mine = get_peft_model_state_dict(model, adapter_name=adapter)
    return set(mine) == set(weights) and all(
        torch.equal(mine[k].detach().cpu().float(), weights[k].float()) for k in weights)


def holds_file(model, adapter: str, path: Path) -> bool:
    return holds(model, adapter, load_file(str(path)))


def active(model, name: str) -> str:
    names = model.active_adapters
    require(len(names) == 1, f"`{name}` has {len(names)} active adapters ({names}): activate exactly one.")
    return names[0]


def base_params(model):
    return [(n, p) for n, p in model.named_parameters() if not is_lora_name(n)]


def lora_params(model):
    return [(n, p) for n, p in model.named_parameters() if is_lora_name(n)]


def dtype_counts(params) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, p in params:
        key = str(p.dtype).replace("torch.", "")
        counts[key] = counts.get(key, 0) + 1
    return counts


@contextmanager
def secret_rng():
    """torch's RNG seeded from ``secrets`` inside the block; the learner's RNG state is as it was after it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(secrets.randbits(63))
        yield


def train_looking(model) -> None:
    """Move every trainable tensor of ``model`` at random, as training would (call inside ``secret_rng``)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * (0.05 if is_lora_name(name) else 0.02))


def own_rng(judge):
    """``judge`` run with a torch RNG of its own: a self-check in the learner's kernel leaves theirs as it was."""
    @wraps(judge)
    def judged(ev: Evidence) -> str:
        with torch.random.fork_rng(devices=[]):
            return judge(ev)
    return judged


def quiet_save(model, target) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(str(target))


def given_snapshot(ev: Evidence, given_id: str, name: str) -> Path:
    """The snapshot of folder ``name`` that the given cell ``given_id`` recorded as it ended."""
    snap = ev.earlier(given_id)
    require(snap is not None and snap.has(name), f"the given cell `{given_id}` did not run in this notebook: run "
                                                 "the notebook from its first cell.")
    path = snap.value(name)
    require(isinstance(path, Path) and path.is_dir(), f"the given cell `{given_id}` saved nothing: run the "
                                                      "notebook from its first cell.")
    return path



def holds_on_course_base(model, name: str, expected: dict, wrong: tuple[str, str], within: str = "") -> None:
    """Fail unless the active adapter of ``model`` (the answer ``name``) holds exactly ``expected`` and its base is
    the course's untouched base model. ``wrong`` is the pair of ✗ lines: the first when its LoRA B matrices (those
    whose names contain ``within``) are all zero, as when no saved tensor reached them, the second when they hold
    other tensors."""
    if not holds(model, active(model, name), expected):
        untouched = all(not p.any() for n, p in model.named_parameters() if is_lora_name(n, "B") and within in n)
        raise Wrong(wrong[0] if untouched else wrong[1])
    with model.disable_adapter():
        base_gap = compare_logits(model, load_base_model(), tokenizer()).max_abs_diff
    require(base_gap == 0.0, f"`{name}`'s base model is not the course's base model.")


def runs_as_remapped(model, name: str, path: Path, prefix: str) -> str:
    """The ✓ detail when ``model`` computes what the adapter saved in ``path`` computes once ``prefix`` is dropped
    from the start of its module paths, loaded with ``key_mapping`` (lessons 8 and 11: keys another version or
    ``torch.compile`` renamed)."""
    reference = PeftModel.from_pretrained(load_base_model(), str(path),
                                          key_mapping={rf"^{re.escape(prefix)}": ""}).eval()
    return same_logits(reference, model, f"`{name}`")
