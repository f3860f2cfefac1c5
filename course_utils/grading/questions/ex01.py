"""Exercise 1 (lesson 1, saving an adapter): the teammate's update it gives, and the judges of its questions."""
from __future__ import annotations

import random
import re
import secrets
from pathlib import Path, PurePath

import torch
from peft import get_peft_model_state_dict
from safetensors.torch import load_file, save_file

from ...adapter_format import WEIGHTS_FILE
from ...files import list_files
from ..evidence import Evidence
from .common import (
    Question,
    Wrong,
    adapter_effect,
    adapter_folder,
    folder,
    holds,
    lora_leaf_names,
    name_list,
    peft_model,
    reload,
    require,
    same_logits,
    weights_of,
    whole_number,
)


def teammate_update(path) -> bool:
    """Exercise 1: a teammate's tool adds a notes file of its own and overwrites some of the tensors in ``path``.

    Which tensors, and the notes file's name, are random: they can only be found by reading the folder.
    Returns False, changing nothing and printing nothing, while Q2 is unanswered (``path`` None or unsaved):
    the untouched student copy then runs on to its checks, which say what is missing.
    """
    if not isinstance(path, (str, PurePath)) or not (Path(path) / WEIGHTS_FILE).is_file():
        return False
    path = Path(path)
    for old in path.glob("notes_*.txt"):  # a rerun replaces the notes of the run before
        old.unlink()
    (path / f"notes_{secrets.token_hex(3)}.txt").write_text("retrained some layers\n", encoding="utf-8")
    weights = path / WEIGHTS_FILE
    state = load_file(str(weights))
    names = sorted(state)
    rng = random.Random(secrets.randbits(32))
    for key in rng.sample(names, rng.randint(1, len(names) - 1)):
        state[key] = state[key] + 0.01 * torch.randn(state[key].shape, generator=torch.Generator().manual_seed(
            rng.randint(0, 2**31)))
    save_file(state, str(weights), metadata={"format": "pt"})
    return True


def _q1(ev: Evidence) -> str:
    """Lesson 1: a LoRA adapter of rank 4 on c_attn and c_proj of every layer that already changes the output."""
    model = peft_model(ev, "model")
    config = model.peft_config[model.active_adapter]
    require(config.peft_type.value == "LORA", f"the adapter is {config.peft_type}, not LoRA.")
    rank = whole_number(config.r, "r")
    require(rank == 4, f"the adapter has rank r={rank}; the task asks for rank 4.")
    leaves = lora_leaf_names(model)
    require(set(leaves) == {"c_attn", "c_proj"}, f"LoRA sits on {sorted(leaves)}; the task asks for c_attn and "
                                                 "c_proj (and nothing else).")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    require(trainable and all("lora_" in n for n in trainable),
            "only the LoRA weights should be trainable (the base stays frozen).")
    require(adapter_effect(model) > 1e-4, "the adapter does not change the output yet: a new adapter's LoRA B "
                                          "matrices are zero until it is trained.")
    return f"LoRA r=4 on c_attn and c_proj, {len(trainable)} trainable tensors, and it changes the logits"


def _q2(ev: Evidence) -> str:
    """Lesson 1: the folder holds the adapter of ``model``, and it reloads to the same logits."""
    path = folder(ev, "folder")
    adapter_folder(path)
    model = peft_model(ev, "model")
    require(holds(model, model.active_adapter, weights_of(path)),
            "the saved weights file does not hold the weights of `model`: save `model` itself into the folder.")
    return "the folder reloads with PeftModel.from_pretrained: " + same_logits(model, reload(path),
                                                                                "the reloaded adapter")


def _q3(ev: Evidence) -> str:
    """Lesson 1: the list of files in the folder (the teammate's notes file included), read from the folder."""
    path = folder(ev, "folder")
    names = name_list(ev.value("files"), "files")
    actual = set(list_files(path))
    original = ev.original("folder") or ""
    outside = [n for n in names if Path(n).is_absolute() or (original and n.startswith(original))]
    require(not outside, "use names relative to the folder, not full paths.")
    extra = sorted(set(names) - actual)
    require(not extra, f"not in the folder: {', '.join(extra)}.")
    missing = actual - set(names)
    require(not missing, f"{len(missing)} of the {len(actual)} files in the folder are missing from your list: "
                         "read the names from the folder, not from memory.")
    require(len(names) == len(set(names)), "your list names a file twice.")
    return f"all {len(actual)} files"


def _q4(ev: Evidence) -> str:
    """Lesson 1: how many tensors the weights file holds, read from its header."""
    path = folder(ev, "folder")
    adapter_folder(path)
    n = whole_number(ev.value("n_tensors"), "n_tensors")
    actual = len(weights_of(path))
    require(n == actual, f"{n} is too {'few' if n < actual else 'many'}: count the tensors in the weights file "
                         "itself (its header lists them).")
    return f"{actual} tensors: one lora_A and one lora_B per adapted module"


_ADAPTER_IN_KEY = r"\.(lora_[AB])\.[^.]+\.weight$"


def _file_key(name: str) -> str:
    """A model parameter name as the weights file spells it (without the adapter's name)."""
    return re.sub(_ADAPTER_IN_KEY, r".\1.weight", name)


def _q5(ev: Evidence) -> str:
    """Lesson 1: which tensors of the file differ from the model's (the teammate changed a random subset)."""
    path = folder(ev, "folder")
    model = peft_model(ev, "model")
    names = {_file_key(n) for n in name_list(ev.value("changed"), "changed")}
    adapter_folder(path)
    file_state = weights_of(path)
    mine = get_peft_model_state_dict(model)
    require(set(mine) == set(file_state), "the file and `model` do not hold the same tensors: pass the model you "
                                          "saved in Q2.")
    unknown = sorted(names - set(file_state))
    if unknown:
        raise Wrong(f"{len(unknown)} name(s) are not tensors of {WEIGHTS_FILE}, e.g. {unknown[0]!r}.")
    actual = {k for k in file_state if not torch.equal(file_state[k], mine[k].detach().cpu())}
    require(not names - actual, f"{len(names - actual)} of your tensors are the same in the file and in `model`.")
    require(not actual - names, f"{len(actual - names)} changed tensor(s) are missing from your answer.")
    return "you found exactly the tensors the teammate changed"


QUESTIONS = (
    Question("ex01_q1", 2, ("model",), _q1),
    Question("ex01_q2", 2, ("folder", "model"), _q2),
    Question("ex01_q3", 1, ("files", "folder"), _q3),
    Question("ex01_q4", 1, ("n_tensors", "folder"), _q4),
    Question("ex01_q5", 3, ("changed", "folder", "model"), _q5),
)
