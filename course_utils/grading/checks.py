"""Self-checks of the graded exercises: ``check("ex02_q1", reloaded=reloaded, ...)`` after each answer.

Every check tests what the learner's real objects and files DO (a saved folder reloads and reproduces the
logits, the active adapter is the one asked for, every parameter sits on one device), never how the code
is spelled. A passed check prints one ✓ line; a failed one raises ``CheckFailed`` whose message is one
✗ line saying what is wrong, without giving the answer away. The grader (``python -m course_utils grade``)
reads the same registry: ``CHECKS[id].points``.

Defined for the exercises of lessons 1-5 (``exercises/``); each check's docstring names its lesson.
"""
from __future__ import annotations

import copy
import json
import math
import operator
import random
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePath
from unittest import mock

import numpy as np
import torch
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file, save_file

from ..adapter_format import CONFIG_FILE, WEIGHTS_FILE
from ..files import list_files, tensor_table
from ..generation import complete
from ..lesson_setup import quiet_libraries
from ..messages import first_line
from ..models import load_base_model, load_tokenizer
from ..placement import device_name
from ..roundtrip import compare_logits, logits_of, sample_batch
from ..shipped import shipped_adapter
from ..tasks import ner_prompt, sentiment_prompt
from .checks_advanced import register_advanced_checks

PASS = "✓"
FAIL = "✗"
# The sentence exercise 5 asks the learner to tag with the english_ner adapter.
NER_SENTENCE = "Elena met Omar in Lisbon."
# The review of exercise 5's mixed batch.
REVIEW = "La comida fue excelente y el servicio muy amable."
# The seed of the colleague's adapter that exercise 3 Q4 repairs.
RANK_SEED = 3
# bfloat16 keeps about 3 significant digits: logits of a bfloat16 base stay this close to float32 ones.
BF16_ATOL = 0.25
# A float32 model that had one layer round-tripped through bfloat16 stays this close.
REPAIRED_ATOL = 1e-2


class CheckFailed(AssertionError):
    """A check that did not pass. Shown in a notebook as its one ✗ line, without a traceback."""

    def __init__(self, check_id: str, message: str):
        self.check_id = check_id
        self.message = message
        super().__init__(f"{FAIL} {check_id}: {message}")

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a traceback
        return [str(self)]


class _Wrong(Exception):
    """Raised inside a check function with the message the learner sees."""


@dataclass(frozen=True)
class Check:
    check_id: str
    points: int
    answers: tuple[str, ...]  # the keyword arguments the learner's answer cell provides
    func: Callable[..., str]


CHECKS: dict[str, Check] = {}


def _register(check_id: str, points: int, answers: tuple[str, ...]):
    def wrap(func):
        CHECKS[check_id] = Check(check_id, points, answers, func)
        return func
    return wrap


def _none_message(name: str) -> str:
    return f"`{name}` is still None: write your answer in the cell above, run it, then run this cell again."


def stub_message(check_id: str) -> str:
    """The ✗ line ``check`` raises while the answers of ``check_id`` are still the stub's None."""
    return str(CheckFailed(check_id, _none_message(CHECKS[check_id].answers[0])))


def check(check_id: str, **kwargs) -> None:
    """Run the check ``check_id`` on the learner's objects: print one ✓ line, or raise ``CheckFailed`` (one ✗ line)."""
    if check_id not in CHECKS:
        raise CheckFailed(check_id, f"no such check; known ones: {', '.join(sorted(CHECKS))}.")
    spec = CHECKS[check_id]
    for name in spec.answers:
        if name not in kwargs:
            raise CheckFailed(check_id, f"pass your answer as {name}=... (the check cell was edited?).")
        if kwargs[name] is None:
            raise CheckFailed(check_id, _none_message(name))
    try:
        quiet_libraries()
        detail = spec.func(**kwargs)
    except _Wrong as wrong:
        raise CheckFailed(check_id, str(wrong)) from None
    except Exception as exc:  # noqa: BLE001 - the learner's object broke the check: say so in one line
        first = first_line(exc, 200)
        raise CheckFailed(check_id, f"could not use your answer: {type(exc).__name__}: {first}") from None
    print(f"{PASS} {check_id}: {detail} (+{spec.points} point{'s' if spec.points != 1 else ''})")


# --------------------------------------------------------------------------------------- helpers
def _require(condition, message: str) -> None:
    if not condition:
        raise _Wrong(message)


def _peft_model(obj, name: str):
    _require(isinstance(obj, PeftModel), f"`{name}` is a {type(obj).__name__}, not a PeftModel "
                                         "(a base model with a LoRA adapter).")
    return obj


def _whole_number(value, name: str) -> int:
    """``value`` as an int: Python, NumPy and torch integers pass; bool, float, str and look-alikes do not."""
    _require(not isinstance(value, (bool, np.bool_)), f"`{name}` should be a whole number, not a bool.")
    try:
        return operator.index(value)
    except TypeError:
        raise _Wrong(f"`{name}` should be a whole number (an int), not a {type(value).__name__}.") from None


def _name_list(value, name: str) -> list[str]:
    """A list, tuple or set of strings (or paths), as strings; anything else is rejected by type."""
    _require(isinstance(value, (list, tuple, set, frozenset)),
             f"`{name}` should be a list of names, not a {type(value).__name__}.")
    _require(all(isinstance(v, (str, PurePath)) for v in value), f"`{name}` should hold names (strings).")
    return [str(v) for v in value]


def _tokenizer():
    return load_tokenizer()


def _same_logits(reference, candidate, what: str, atol: float = 1e-5) -> str:
    result = compare_logits(reference, candidate, _tokenizer(), atol=atol)
    _require(result.ok, f"{what} gives different logits (max |difference| {result.max_abs_diff:.1e}, "
                        f"allowed {atol:g}): its weights are not the ones expected.")
    return f"logits match the reference (max |difference| {result.max_abs_diff:.1e}, allowed {atol:g})"


def _lora_leaf_names(model) -> dict[str, int]:
    """``{leaf module name: count}`` of the modules carrying LoRA layers."""
    counts: dict[str, int] = {}
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            leaf = name.rsplit(".", 1)[-1]
            counts[leaf] = counts.get(leaf, 0) + 1
    return counts


def _adapter_effect(model) -> float:
    """How much the active adapter changes the logits (0 when its LoRA B matrices are zero)."""
    batch = sample_batch(_tokenizer())
    with_adapter = logits_of(model, batch)
    with model.disable_adapter():
        without = logits_of(model, batch)
    return float((with_adapter - without).abs().max())


def _folder(path, name: str) -> Path:
    _require(isinstance(path, (str, PurePath)), f"`{name}` should be the folder's path (a str or Path), "
                                                f"not a {type(path).__name__}.")
    folder = Path(path)
    _require(folder.is_dir(), f"nothing was saved at {str(path)!r}: run the cell that saves, and pass that folder.")
    return folder


def _adapter_folder(folder: Path) -> None:
    files = list_files(folder)
    _require(files, f"{folder} is empty: nothing was saved there.")
    if CONFIG_FILE not in files:
        nested = sorted({f.split("/")[0] for f in files if f.endswith("/" + CONFIG_FILE)})
        if nested:
            raise _Wrong(f"the adapter sits in a subfolder ({', '.join(nested)}/), not at the folder's root: "
                         "an adapter saved under a name other than 'default' goes into a subfolder.")
        if "config.json" in files:
            raise _Wrong("the folder holds a full model (config.json), not an adapter: save the PeftModel.")
        raise _Wrong(f"no {CONFIG_FILE} in the folder (it holds {', '.join(files)}).")
    if WEIGHTS_FILE not in files:
        other = [f for f in files if f.startswith("adapter_model")]
        raise _Wrong(f"no {WEIGHTS_FILE} in the folder (found {', '.join(other) or 'no weights'}): "
                     "save with the default safetensors format.")


def _reload(folder: Path, **kwargs):
    return PeftModel.from_pretrained(load_base_model(), str(folder), **kwargs)


def _shipped(name: str):
    return _reload(shipped_adapter(name))


def _base_params(model):
    return [(n, p) for n, p in model.named_parameters() if "lora_" not in n]


def _lora_params(model):
    return [(n, p) for n, p in model.named_parameters() if "lora_" in n]


def _file_key(name: str) -> str:
    """A model parameter name as the weights file spells it (without the adapter's name)."""
    return _ADAPTER_IN_KEY.sub(r".\1.weight", name)


_ADAPTER_IN_KEY = re.compile(r"\.(lora_[AB])\.[^.]+\.weight$")


def _holds_file(model, adapter: str, weights: Path) -> bool:
    """Whether the adapter ``adapter`` of ``model`` holds exactly the tensors of the safetensors file ``weights``."""
    mine = get_peft_model_state_dict(model, adapter_name=adapter)
    theirs = load_file(str(weights))
    return set(mine) == set(theirs) and all(
        torch.equal(mine[k].detach().cpu().float(), theirs[k].float()) for k in theirs)


def _active(model, name: str) -> str:
    active = model.active_adapters
    _require(len(active) == 1, f"`{name}` has {len(active)} active adapters ({active}): activate exactly one.")
    return active[0]


def _not_shared(model, reference, name: str) -> None:
    _require(model is not reference, f"`{name}` is the very model you saved: reload it from the folder into a new "
                                     "base model.")
    shared = {p.data_ptr() for p in reference.parameters()}
    _require(not any(p.data_ptr() in shared for p in model.parameters()),
             f"`{name}` shares weights with the saved model: build it on a fresh base model (load_base_model()).")


def _loaded_from(model, folder: Path, reference, name: str) -> str:
    """A PeftModel on a fresh base, loaded frozen from ``folder``: not the reference's tensors, the file's values."""
    model = _peft_model(model, name)
    _not_shared(model, reference, name)
    adapter = _active(model, name)
    _require(_holds_file(model, adapter, folder / WEIGHTS_FILE),
             f"the active adapter of `{name}` does not hold the weights in {folder.name}/{WEIGHTS_FILE}.")
    trainable = sum(p.requires_grad for p in model.parameters())
    _require(trainable == 0, f"{trainable} tensors of `{name}` require grad, like the model you built: it was not "
                             "loaded from the folder for inference (a reload is frozen by default).")
    return _same_logits(reference, model, f"`{name}`")


# ------------------------------------------------------------------ given material of the exercises
def teammate_update(folder) -> bool:
    """Exercise 1: a teammate's tool adds a notes file of its own and overwrites some of the tensors in ``folder``.

    Which tensors, and the notes file's name, are random: they can only be found by reading the folder.
    Returns False, changing nothing and printing nothing, while Q2 is unanswered (``folder`` None or unsaved):
    the untouched student copy then runs on to its checks, which say what is missing.
    """
    if not isinstance(folder, (str, PurePath)) or not (Path(folder) / WEIGHTS_FILE).is_file():
        return False
    folder = Path(folder)
    for old in folder.glob("notes_*.txt"):  # a rerun replaces the notes of the run before
        old.unlink()
    (folder / f"notes_{secrets.token_hex(3)}.txt").write_text("retrained some layers\n", encoding="utf-8")
    weights = folder / WEIGHTS_FILE
    state = load_file(str(weights))
    names = sorted(state)
    rng = random.Random(secrets.randbits(32))
    for key in rng.sample(names, rng.randint(1, len(names) - 1)):
        state[key] = state[key] + 0.01 * torch.randn(state[key].shape, generator=torch.Generator().manual_seed(
            rng.randint(0, 2**31)))
    save_file(state, str(weights), metadata={"format": "pt"})
    return True


def _colleague(seed: int, adapter_name: str = "default", targets=("c_attn",)) -> PeftModel:
    """A LoRA adapter (rank 8) with non-zero weights, as if trained: the same ``seed`` gives the same weights."""
    torch.manual_seed(seed)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=list(targets), init_lora_weights=False)
    return get_peft_model(load_base_model(), config, adapter_name=adapter_name)


def given_adapter(target, targets=("c_attn",), adapter_name: str = "default", seed: int = 0) -> PeftModel:
    """Exercises 2-4: a trained-looking adapter (rank 8 on ``targets``) saved into ``target``; returns the model."""
    model = _colleague(seed, adapter_name, targets)
    model.save_pretrained(str(target))
    return model


def broken_rank_folder(target) -> Path:
    """Exercise 3: a colleague's adapter folder whose config was edited by hand: its rank no longer fits the weights."""
    target = Path(target)
    given_adapter(target, seed=RANK_SEED)
    config_path = target / CONFIG_FILE
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["r"] = config["r"] // 2
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return target


def memory_budget(folder) -> int:
    """Exercise 4: bytes that hold the course model in a 16-bit dtype with the float32 adapter, but not in float32."""
    base = load_base_model()
    n_base = sum(p.numel() for p in base.parameters())
    n_lora = sum(math.prod(shape) for _, _, shape in tensor_table(Path(folder) / WEIGHTS_FILE))
    fits = 2 * n_base + 4 * n_lora
    return (fits + 4 * (n_base + n_lora)) // 2


# ------------------------------------------------------------------------------- exercise 1
@_register("ex01_q1", 2, ("model",))
def _ex01_q1(model) -> str:
    """Lesson 1: a LoRA adapter of rank 4 on c_attn and c_proj that already changes the output."""
    model = _peft_model(model, "model")
    config = model.peft_config[model.active_adapter]
    _require(config.peft_type.value == "LORA", f"the adapter is {config.peft_type}, not LoRA.")
    rank = _whole_number(config.r, "r")
    _require(rank == 4, f"the adapter has rank r={rank}; the task asks for rank 4.")
    leaves = set(_lora_leaf_names(model))
    _require(leaves == {"c_attn", "c_proj"}, f"LoRA sits on {sorted(leaves)}; the task asks for c_attn and c_proj "
                                             "(and nothing else).")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    _require(trainable and all("lora_" in n for n in trainable),
             "only the LoRA weights should be trainable (the base stays frozen).")
    _require(_adapter_effect(model) > 1e-4, "the adapter does not change the output yet: a new adapter's LoRA B "
                                             "matrices are zero until it is trained.")
    return f"LoRA r=4 on c_attn and c_proj, {len(trainable)} trainable tensors, and it changes the logits"


@_register("ex01_q2", 2, ("folder", "model"))
def _ex01_q2(folder, model) -> str:
    """Lesson 1: the folder holds the adapter of ``model``, and it reloads to the same logits."""
    folder = _folder(folder, "folder")
    _adapter_folder(folder)
    model = _peft_model(model, "model")
    _require(_holds_file(model, model.active_adapter, folder / WEIGHTS_FILE),
             f"{WEIGHTS_FILE} does not hold the weights of `model`: save `model` itself into the folder.")
    return "the folder reloads with PeftModel.from_pretrained: " + _same_logits(model, _reload(folder),
                                                                                 "the reloaded adapter")


@_register("ex01_q3", 1, ("files", "folder"))
def _ex01_q3(files, folder) -> str:
    """Lesson 1: the list of files in the folder (the teammate's notes file included), read from the folder."""
    folder = _folder(folder, "folder")
    names = _name_list(files, "files")
    actual = set(list_files(folder))
    outside = [n for n in names if Path(n).is_absolute() or n.startswith(str(folder))]
    _require(not outside, "use names relative to the folder, not full paths.")
    extra = sorted(set(names) - actual)
    _require(not extra, f"not in the folder: {', '.join(extra)}.")
    missing = actual - set(names)
    _require(not missing, f"{len(missing)} of the {len(actual)} files in the folder are missing from your list: "
                          "read the names from the folder, not from memory.")
    _require(len(names) == len(set(names)), "your list names a file twice.")
    return f"all {len(actual)} files"


@_register("ex01_q4", 1, ("n_tensors", "folder"))
def _ex01_q4(n_tensors, folder) -> str:
    """Lesson 1: how many tensors the weights file holds, read from its header."""
    folder = _folder(folder, "folder")
    _adapter_folder(folder)
    n = _whole_number(n_tensors, "n_tensors")
    actual = len(tensor_table(folder / WEIGHTS_FILE))
    _require(n == actual, f"{n} is too {'few' if n < actual else 'many'}: count the tensors in "
                          f"{WEIGHTS_FILE} itself (its header lists them).")
    return f"{actual} tensors: one lora_A and one lora_B per adapted module"


@_register("ex01_q5", 3, ("changed", "folder", "model"))
def _ex01_q5(changed, folder, model) -> str:
    """Lesson 1: which tensors of the file differ from the model's (the teammate changed a random subset)."""
    folder = _folder(folder, "folder")
    model = _peft_model(model, "model")
    names = {_file_key(n) for n in _name_list(changed, "changed")}
    file_state = load_file(str(folder / WEIGHTS_FILE))
    mine = get_peft_model_state_dict(model)
    _require(set(mine) == set(file_state), "the file and `model` do not hold the same tensors: pass the model you "
                                           "saved in Q2.")
    unknown = sorted(names - set(file_state))
    if unknown:
        raise _Wrong(f"{len(unknown)} name(s) are not tensors of {WEIGHTS_FILE}, e.g. {unknown[0]!r}.")
    actual = {k for k in file_state if not torch.equal(file_state[k], mine[k].detach().cpu())}
    _require(not names - actual, f"{len(names - actual)} of your tensors are the same in the file and in `model`.")
    _require(not actual - names, f"{len(actual - names)} changed tensor(s) are missing from your answer.")
    return "you found exactly the tensors the teammate changed"


# ------------------------------------------------------------------------------- exercise 2
@_register("ex02_q1", 2, ("reloaded", "folder"))
def _ex02_q1(reloaded, folder, reference) -> str:
    """Lesson 2: a reload with PeftModel.from_pretrained that reproduces the saved model's logits."""
    return _loaded_from(reloaded, _folder(folder, "folder"), reference, "reloaded")


@_register("ex02_q2", 2, ("multi", "folder"))
def _ex02_q2(multi, folder, given, reference) -> str:
    """Lesson 2: the adapter loaded into the given PeftModel under the name 'reloaded', and active."""
    folder = _folder(folder, "folder")
    multi = _peft_model(multi, "multi")
    _require(multi is given, "`multi` is a new model: load the adapter into `given_multi`, the model the given cell built.")
    names = sorted(multi.peft_config)
    _require("reloaded" in names, f"`multi` has no adapter named 'reloaded' (it has {names}).")
    _require(_holds_file(multi, "reloaded", folder / WEIGHTS_FILE),
             f"the adapter 'reloaded' does not hold the weights in {folder.name}/{WEIGHTS_FILE}: load it from there.")
    active = _active(multi, "multi")
    _require(active == "reloaded", f"the active adapter is {active!r}: loading an adapter into a PeftModel does not "
                                   "activate it.")
    return "'reloaded' is active and gives " + _same_logits(reference, multi, "the 'reloaded' adapter")


@_register("ex02_q3", 2, ("trainable",))
def _ex02_q3(trainable) -> str:
    """Lesson 2: the shipped spanish_sentiment adapter reloaded for training: LoRA trainable, base frozen."""
    model = _peft_model(trainable, "trainable")
    folder = shipped_adapter("spanish_sentiment")
    _require(_holds_file(model, _active(model, "trainable"), folder / WEIGHTS_FILE),
             "the active adapter of `trainable` does not hold the weights of the shipped spanish_sentiment adapter.")
    lora = _lora_params(model)
    n_lora = sum(p.requires_grad for _, p in lora)
    _require(n_lora > 0, "0 LoRA parameters require grad: an adapter is reloaded frozen unless you ask otherwise.")
    _require(n_lora == len(lora), f"{len(lora) - n_lora} of the {len(lora)} LoRA tensors are still frozen.")
    n_base = sum(p.requires_grad for _, p in _base_params(model))
    _require(n_base == 0, f"{n_base} base-model parameters require grad: training would change the base too.")
    return f"{n_lora} LoRA tensors trainable, base frozen, the shipped weights loaded"


def _verdict(proves, saved, candidate, case: str) -> bool:
    answer = proves(saved, candidate)
    _require(isinstance(answer, (bool, np.bool_)),
             f"`proves_reload` should return True or False, not a {type(answer).__name__} ({case}).")
    return bool(answer)


@_register("ex02_q4", 3, ("proves_reload",))
def _ex02_q4(proves_reload, folder, reference) -> str:
    """Lesson 2: the learner's own logit proof: True for a real reload, False for every load that proves nothing."""
    folder = _folder(folder, "folder")
    _require(callable(proves_reload), f"`proves_reload` should be a function, not a {type(proves_reload).__name__}.")
    _require(_verdict(proves_reload, reference, _reload(folder), "a real reload"),
             "it returns False for a real reload of the saved adapter.")
    wrong = {
        "the plain base model": load_base_model(),
        "a fresh, untrained adapter": get_peft_model(load_base_model(), LoraConfig(r=8, target_modules=["c_attn"])),
        "another trained adapter": _shipped("spanish_sentiment"),
    }
    for case, candidate in wrong.items():
        _require(not _verdict(proves_reload, reference, candidate, case), f"it returns True for {case}.")
    untrained = get_peft_model(load_base_model(), LoraConfig(r=8, target_modules=["c_attn"]))
    noop = get_peft_model(load_base_model(), LoraConfig(r=8, target_modules=["c_attn"]))
    _require(not _verdict(proves_reload, untrained, noop, "an untrained saved adapter"),
             "it returns True when the saved adapter is untrained: matching logits then prove nothing (the base "
             "model gives them too).")
    return "True for the real reload; False for the base, an untrained or another adapter, and a no-op adapter"


# ------------------------------------------------------------------------------- exercise 3
@_register("ex03_q1", 2, ("fixed",))
def _ex03_q1(fixed, shared, reference) -> str:
    """Lesson 3: the colleague's adapter, reloaded from the subfolder its name put it in."""
    shared = _folder(shared, "shared")
    subfolders = sorted(p for p in shared.iterdir() if (p / WEIGHTS_FILE).is_file())
    _require(subfolders, f"no adapter under {shared}: run the given cell again.")
    return _loaded_from(fixed, subfolders[0], reference, "fixed")


@_register("ex03_q2", 2, ("config",))
def _ex03_q2(config) -> str:
    """Lesson 3: a rank-8 LoraConfig whose target_modules exist in GPT-2: the fused q/k/v projection of every layer."""
    _require(isinstance(config, LoraConfig), f"`config` is a {type(config).__name__}, not a LoraConfig.")
    rank = _whole_number(config.r, "r")
    _require(rank == 8, f"the config has rank r={rank}; the task asks for rank 8.")
    base = load_base_model()
    try:
        model = get_peft_model(base, copy.deepcopy(config))
    except ValueError as exc:
        raise _Wrong(f"get_peft_model still fails with it: {type(exc).__name__}: {first_line(exc, 160)}") from None
    leaves = _lora_leaf_names(model)
    _require(set(leaves) == {"c_attn"}, f"LoRA lands on {sorted(leaves)}: the attention's q/k/v projection is "
                                        "one module in GPT-2; target only that one.")
    n_layers = base.config.n_layer
    _require(leaves["c_attn"] == n_layers, f"LoRA lands on {leaves['c_attn']} of the {n_layers} layers: "
                                           "target the module name in every layer.")
    return f"rank 8, LoRA on the q/k/v projection of all {n_layers} layers"


@_register("ex03_q3", 2, ("spanish_model",))
def _ex03_q3(spanish_model) -> str:
    """Lesson 3: the Spanish adapter made active (under any name), the NER adapter still loaded."""
    model = _peft_model(spanish_model, "spanish_model")
    names = sorted(model.peft_config)
    ner = shipped_adapter("english_ner") / WEIGHTS_FILE
    _require(any(_holds_file(model, n, ner) for n in names),
             f"no adapter of the model ({names}) holds english_ner's weights: keep it loaded and switch.")
    active = _active(model, "spanish_model")
    _require(_holds_file(model, active, shipped_adapter("spanish_sentiment") / WEIGHTS_FILE),
             f"the active adapter {active!r} does not hold the Spanish sentiment adapter's weights.")
    return f"{active!r} (the Spanish adapter) active, english_ner kept, " + _same_logits(
        _shipped("spanish_sentiment"), model, "the active adapter")


@_register("ex03_q4", 3, ("repaired",))
def _ex03_q4(repaired) -> str:
    """Lesson 3: a folder broken in a way the lesson did not show (config rank edited), repaired so it reloads."""
    folder = _folder(repaired, "repaired")
    _adapter_folder(folder)
    try:
        model = _reload(folder)
    except Exception as exc:  # noqa: BLE001 - any load error is the learner's feedback
        raise _Wrong(f"the folder still does not load: {type(exc).__name__}: {first_line(exc, 140)}") from None
    expected = _colleague(RANK_SEED)
    mine, theirs = get_peft_model_state_dict(model), get_peft_model_state_dict(expected)
    _require(set(mine) == set(theirs) and all(torch.equal(mine[k], theirs[k]) for k in theirs),
             f"{WEIGHTS_FILE} no longer holds the colleague's trained weights: repair the config, keep the weights.")
    return "the repaired folder reloads and " + _same_logits(expected, model, "the repaired adapter")


# ------------------------------------------------------------------------------- exercise 4
def _dtype_counts(params) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, p in params:
        key = str(p.dtype).replace("torch.", "")
        counts[key] = counts.get(key, 0) + 1
    return counts


def _lora_weights_match(model, folder: Path, atol: float) -> None:
    ref = load_file(str(folder / WEIGHTS_FILE))
    mine = get_peft_model_state_dict(model, adapter_name=_active(model, "the model"))
    _require(set(mine) == set(ref), f"its LoRA layers are not the ones saved in {folder.name}/.")
    worst = max(float((mine[n].detach().float().cpu() - ref[n].float()).abs().max()) for n in ref)
    _require(worst <= atol, f"its LoRA weights differ from the saved ones by up to {worst:.1e}: load them from "
                            f"{folder.name}/.")


def _dtype_of(value, name: str) -> torch.dtype:
    if isinstance(value, str):
        found = getattr(torch, value.removeprefix("torch."), None)
        _require(isinstance(found, torch.dtype), f"`{name}` = {value!r} is not a torch dtype's name.")
        return found
    _require(isinstance(value, torch.dtype), f"`{name}` should be a torch dtype (like torch.float16), not a "
                                             f"{type(value).__name__}.")
    return value


@_register("ex04_q1", 2, ("bf16_model", "lora_dtype", "folder"))
def _ex04_q1(bf16_model, lora_dtype, folder, reference) -> str:
    """Lesson 4: a bfloat16 base with the saved adapter on top, the defaults kept (LoRA weights upcast to float32)."""
    folder = _folder(folder, "folder")
    model = _peft_model(bf16_model, "bf16_model")
    base = _dtype_counts(_base_params(model))
    _require(set(base) == {"bfloat16"}, f"the base parameters are {base}: load the base itself in bfloat16.")
    lora = _dtype_counts(_lora_params(model))
    _require(set(lora) == {"float32"}, f"the LoRA weights are {lora}: with peft's defaults an adapter put on a "
                                       "bfloat16 base is not cast down; cast the base before adding the adapter.")
    _lora_weights_match(model, folder, atol=0.0)
    answered = _dtype_of(lora_dtype, "lora_dtype")
    _require(answered == torch.float32, f"`lora_dtype` is {answered}, but that is not the dtype your model's LoRA "
                                        "weights have: read it from the model.")
    detail = _same_logits(reference, model, "the bfloat16 model", atol=BF16_ATOL)
    return f"base bfloat16, LoRA float32 as you said; {detail}"


@_register("ex04_q2", 2, ("fixed",))
def _ex04_q2(fixed, broken, folder, reference) -> str:
    """Lesson 4: the given model, one layer left in bfloat16, cast back in place so that every parameter is float32."""
    folder = _folder(folder, "folder")
    model = _peft_model(fixed, "fixed")
    _require(model is broken, "`fixed` is not `broken`: repair the given model itself, without reloading or copying.")
    counts = _dtype_counts(model.named_parameters())
    _require(set(counts) == {"float32"}, f"its parameters are {counts}: every parameter should be float32.")
    _lora_weights_match(model, folder, atol=0.0)
    return "every parameter float32, " + _same_logits(reference, model, "`fixed`", atol=REPAIRED_ATOL)


def _devices(model) -> dict[str, int]:
    where: dict[str, int] = {}
    for _, p in list(model.named_parameters()) + list(model.named_buffers()):
        where[p.device.type] = where.get(p.device.type, 0) + 1
    return where


def _place_on_other_machine(place, folder: Path) -> str:
    """What ``place`` picks when the machine looks different (a GPU appears, or the GPU goes away)."""
    has_cuda = torch.cuda.is_available()
    model = _reload(folder)
    with mock.patch.object(torch.cuda, "is_available", return_value=not has_cuda):
        expected = device_name()
        try:
            result = place(model)
        except (AssertionError, RuntimeError) as exc:
            if not has_cuda and "cuda" in str(exc).lower():
                return expected  # it tried to move the model to the (simulated) GPU
            raise
    _require(isinstance(result, tuple) and len(result) == 2, "`place` should return (model, device).")
    return str(result[1])


@_register("ex04_q3", 2, ("place", "placed", "device", "folder"))
def _ex04_q3(place, placed, device, folder, reference) -> str:
    """Lesson 4: a function that puts a model on the best device of whatever machine runs it."""
    folder = _folder(folder, "folder")
    _require(callable(place), f"`place` should be a function, not a {type(place).__name__}.")
    model = _peft_model(placed, "placed")
    best = device_name()
    _require(isinstance(device, str), f"`device` should be the device's name (a str), not a {type(device).__name__}.")
    _require(device == best, f"device {device!r} is not the best one here: ask course_utils, do not hard-code it.")
    where = _devices(model)
    _require(set(where) == {best}, f"the tensors sit on {len(where)} device(s), {where}: every parameter and "
                                   f"buffer should be on {best}.")
    here = place(_reload(folder))
    _require(isinstance(here, tuple) and len(here) == 2, "`place` should return (model, device).")
    elsewhere = _place_on_other_machine(place, folder)
    with mock.patch.object(torch.cuda, "is_available", return_value=not torch.cuda.is_available()):
        other_best = device_name()
    _require(elsewhere == other_best, f"on a machine whose best device is {other_best}, `place` still picks "
                                      f"{elsewhere!r}: ask course_utils at run time, do not hard-code it.")
    return f"all {sum(where.values())} tensors on {best}, " + _same_logits(reference, model, "`placed`",
                                                                           atol=REPAIRED_ATOL)


@_register("ex04_q4", 3, ("fitted", "fitted_bytes", "folder"))
def _ex04_q4(fitted, fitted_bytes, folder, reference) -> str:
    """Lesson 4: a dtype plan for a memory budget: 16-bit base, float32 adapter, the bytes counted, and it fits."""
    folder = _folder(folder, "folder")
    budget = memory_budget(folder)
    model = _peft_model(fitted, "fitted")
    where = _devices(model)
    _require("meta" not in where, "some tensors sit on the meta device: they hold no weights at all.")
    actual = sum(p.numel() * p.element_size() for p in model.parameters())
    stated = _whole_number(fitted_bytes, "fitted_bytes")
    _require(stated == actual, f"`fitted_bytes` is {stated:,}, but `fitted`'s parameters take {actual:,} bytes "
                               "(count numel x element size over every parameter).")
    _require(actual <= budget, f"`fitted` takes {actual:,} bytes, over the budget of {budget:,}.")
    base = _dtype_counts(_base_params(model))
    _require(len(base) == 1, f"the base parameters are {base}: use one dtype for the whole base.")
    _require(set(_dtype_counts(_lora_params(model))) == {"float32"},
             "the LoRA weights should stay float32 (peft's default), they are small.")
    _lora_weights_match(model, folder, atol=0.0)
    detail = _same_logits(reference, model, "`fitted`", atol=BF16_ATOL)
    return f"{actual:,} bytes within the budget of {budget:,}, base {next(iter(base))}, LoRA float32; {detail}"


# ------------------------------------------------------------------------------- exercise 5
def _adapter_matches_shipped(model, name: str) -> None:
    _require(_holds_file(model, name, shipped_adapter(name) / WEIGHTS_FILE),
             f"the adapter named {name!r} does not hold the weights of the shipped {name} adapter.")


@_register("ex05_q1", 2, ("model",))
def _ex05_q1(model) -> str:
    """Lesson 5: both shipped adapters loaded onto one base, under their own names."""
    model = _peft_model(model, "model")
    names = sorted(model.peft_config)
    for name in ("spanish_sentiment", "english_ner"):
        _require(name in names, f"no adapter named {name!r} (the model has {names}).")
        _adapter_matches_shipped(model, name)
    return "spanish_sentiment and english_ner loaded on one base with the shipped weights"


@_register("ex05_q2", 2, ("ner_output", "model"))
def _ex05_q2(ner_output, model) -> str:
    """Lesson 5: the NER adapter switched on, and its greedy output on NER_SENTENCE."""
    model = _peft_model(model, "model")
    active = _active(model, "model")
    _require(active == "english_ner", f"the active adapter is {active!r}, not english_ner.")
    _require(isinstance(ner_output, str), f"`ner_output` should be the generated text, not a "
                                          f"{type(ner_output).__name__}.")
    expected = complete(_shipped("english_ner"), _tokenizer(), ner_prompt(NER_SENTENCE))
    _require(ner_output.strip() == expected.strip(), "that is not what english_ner writes for the sentence: "
                                                     "generate with the NER adapter active, on the NER prompt.")
    return f"english_ner active; it tags the sentence as {ner_output.strip()!r}"


@_register("ex05_q3", 2, ("saved_root",))
def _ex05_q3(saved_root) -> str:
    """Lesson 5: both adapters saved under one folder so that each reloads on its own."""
    root = _folder(saved_root, "saved_root")
    for name in ("spanish_sentiment", "english_ner"):
        sub = root / name
        _require((sub / CONFIG_FILE).is_file(),
                 f"no {name}/{CONFIG_FILE} under the folder: save both adapters in one folder.")
        _adapter_folder(sub)
        _same_logits(_shipped(name), _reload(sub), f"the {name} adapter reloaded from {name}/")
    return "each adapter reloads from its subfolder and gives the shipped adapter's logits"


MIXED_ROWS = (("english_ner", "sentence"), ("spanish_sentiment", "review"), ("__base__", "sentence"))


def mixed_prompts() -> list[str]:
    """Exercise 5 Q4: the three prompts of the mixed batch, in order (see MIXED_ROWS for the adapter of each row)."""
    texts = {"sentence": ner_prompt(NER_SENTENCE), "review": sentiment_prompt(REVIEW)}
    return [texts[kind] for _, kind in MIXED_ROWS]


def _row_texts(value, name: str) -> list[str]:
    _require(isinstance(value, (list, tuple)), f"`{name}` should be a list of 3 texts, not a {type(value).__name__}.")
    _require(len(value) == len(MIXED_ROWS), f"`{name}` has {len(value)} rows; the batch has {len(MIXED_ROWS)}.")
    _require(all(isinstance(v, str) for v in value), f"`{name}` should hold the generated texts (strings).")
    return list(value)


@_register("ex05_q4", 3, ("mixed", "single"))
def _ex05_q4(mixed, single) -> str:
    """Lesson 5: one mixed-adapter batch, checked row by row against one-adapter-at-a-time runs."""
    mixed, single = _row_texts(mixed, "mixed"), _row_texts(single, "single")
    tok = _tokenizer()
    both = _reload(shipped_adapter("spanish_sentiment"), adapter_name="spanish_sentiment")
    both.load_adapter(str(shipped_adapter("english_ner")), adapter_name="english_ner")
    prompts = mixed_prompts()
    names = [name for name, _ in MIXED_ROWS]
    expected_mixed = complete(both, tok, prompts, adapter_names=names)
    for i, (name, _) in enumerate(MIXED_ROWS):
        if name == "__base__":
            with both.disable_adapter():
                alone = complete(both, tok, prompts[i])
        else:
            both.set_adapter(name)
            alone = complete(both, tok, prompts[i])
        _require(single[i] == alone, f"`single` row {i} is not what {name} writes for its prompt on its own.")
        _require(mixed[i] == expected_mixed[i], f"`mixed` row {i} is not what {name} writes in the mixed batch: "
                                                "pass one adapter name per row, in the batch's order.")
    same = sum(m == s for m, s in zip(mixed, single))
    return f"each of the {len(names)} rows right; {same} of {len(names)} rows equal their one-adapter run"


# ------------------------------------------------------------------- exercises 6 and 7 (checks_advanced.py)
register_advanced_checks(_register, _Wrong)
