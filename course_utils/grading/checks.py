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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file

from ..adapter_format import CONFIG_FILE, WEIGHTS_FILE
from ..files import list_files, tensor_table
from ..generation import complete
from ..lesson_setup import quiet_libraries
from ..messages import first_line
from ..models import load_base_model, load_tokenizer
from ..placement import device_name
from ..roundtrip import compare_logits, logits_of, sample_batch
from ..shipped import shipped_adapter
from ..tasks import ner_prompt
from .checks_advanced import register_advanced_checks

PASS = "✓"
FAIL = "✗"
# The sentence exercise 5 asks the learner to tag with the english_ner adapter.
NER_SENTENCE = "Elena met Omar in Lisbon."
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
    except Exception as exc:  # the learner's object broke the check: say so in one line
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
    _require(isinstance(path, (str, Path)), f"`{name}` should be the folder's path (a str or Path), "
                                           f"not a {type(path).__name__}.")
    folder = Path(path)
    _require(folder.is_dir(), f"nothing was saved at {str(path)!r}: run the cell that saves, and pass that folder.")
    return folder


def _adapter_folder(folder: Path) -> None:
    files = list_files(folder)
    _require(files, f"{folder} is empty: nothing was saved there.")
    if CONFIG_FILE not in files:
        nested = sorted({f.split("/")[0] for f in files if f.endswith("/adapter_config.json")})
        if nested:
            raise _Wrong(f"the adapter sits in a subfolder ({', '.join(nested)}/), not at the folder's root: "
                         "an adapter saved under a name other than 'default' goes into a subfolder.")
        if "config.json" in files:
            raise _Wrong("the folder holds a full model (config.json), not an adapter: save the PeftModel.")
        raise _Wrong(f"no adapter_config.json in the folder (it holds {', '.join(files)}).")
    if WEIGHTS_FILE not in files:
        other = [f for f in files if f.startswith("adapter_model")]
        raise _Wrong(f"no adapter_model.safetensors in the folder (found {', '.join(other) or 'no weights'}): "
                     "save with the default safetensors format.")


def _reload(folder: Path, **kwargs):
    return PeftModel.from_pretrained(load_base_model(), str(folder), **kwargs)


def _shipped(name: str):
    return _reload(shipped_adapter(name))


def _base_params(model):
    return [(n, p) for n, p in model.named_parameters() if "lora_" not in n]


def _lora_params(model):
    return [(n, p) for n, p in model.named_parameters() if "lora_" in n]


# ------------------------------------------------------------------------------- exercise 1
@_register("ex01_q1", 2, ("model",))
def _ex01_q1(model) -> str:
    """Lesson 1: a LoRA adapter of rank 4 on c_attn and c_proj that already changes the output."""
    model = _peft_model(model, "model")
    config = model.peft_config[model.active_adapter]
    _require(getattr(config, "peft_type", None) is not None and config.peft_type.value == "LORA",
             f"the adapter is {config.peft_type}, not LoRA.")
    _require(config.r == 4, f"the adapter has rank r={config.r}; the task asks for rank 4.")
    leaves = set(_lora_leaf_names(model))
    _require(leaves == {"c_attn", "c_proj"}, f"LoRA sits on {sorted(leaves)}; the task asks for c_attn and c_proj "
                                             "(and nothing else).")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    _require(trainable and all("lora_" in n for n in trainable),
             "only the LoRA weights should be trainable (the base stays frozen).")
    _require(_adapter_effect(model) > 1e-4, "the adapter does not change the output yet: LoRA's B matrices start "
                                             "at zero by default; read the task again about the initialisation.")
    return f"LoRA r=4 on c_attn and c_proj, {len(trainable)} trainable tensors, and it changes the logits"


@_register("ex01_q2", 2, ("folder", "model"))
def _ex01_q2(folder, model) -> str:
    """Lesson 1: the folder holds the adapter of ``model``, and it reloads to the same logits."""
    folder = _folder(folder, "folder")
    _adapter_folder(folder)
    return "the folder reloads with PeftModel.from_pretrained: " + _same_logits(model, _reload(folder),
                                                                                 "the reloaded adapter")


@_register("ex01_q3", 1, ("files", "folder"))
def _ex01_q3(files, folder) -> str:
    """Lesson 1: the list of files save_pretrained wrote."""
    folder = _folder(folder, "folder")
    _require(not isinstance(files, (str, bytes)) and hasattr(files, "__iter__"),
             f"`files` should be a list of file names, not a {type(files).__name__}.")
    names = [str(f) for f in files]
    _require(all(isinstance(f, (str, Path)) for f in files), "`files` should hold file names (strings).")
    actual = set(list_files(folder))
    extra = sorted(set(names) - actual)
    _require(not extra, f"not in the folder: {', '.join(extra)} (use names relative to the folder).")
    missing = actual - set(names)
    _require(not missing, f"{len(missing)} of the {len(actual)} files in the folder are missing from your list.")
    _require(len(names) == len(set(names)), "your list names a file twice.")
    return f"all {len(actual)} files"


@_register("ex01_q4", 1, ("n_tensors", "folder"))
def _ex01_q4(n_tensors, folder) -> str:
    """Lesson 1: how many tensors the weights file holds, read from its header."""
    folder = _folder(folder, "folder")
    _adapter_folder(folder)
    _require(isinstance(n_tensors, int) and not isinstance(n_tensors, bool),
             f"`n_tensors` should be a whole number, not a {type(n_tensors).__name__}.")
    actual = len(tensor_table(folder / WEIGHTS_FILE))
    _require(n_tensors == actual, f"{n_tensors} is too {'few' if n_tensors < actual else 'many'}: count the "
                                  "tensors in adapter_model.safetensors itself (its header lists them).")
    return f"{actual} tensors: one lora_A and one lora_B per adapted module"


# ------------------------------------------------------------------------------- exercise 2
def _fresh_copy(model, reference, name: str) -> None:
    _require(model is not reference, f"`{name}` is the very model you saved: reload it from the folder into a new "
                                     "base model.")
    shared = {p.data_ptr() for p in reference.parameters()}
    _require(not any(p.data_ptr() in shared for p in model.parameters()),
             f"`{name}` shares weights with the saved model: build it on a fresh base model (load_base_model()).")


def _reload_reproduces(obj, reference, name: str) -> str:
    """A PeftModel built on a fresh base that gives the saved model's logits."""
    obj = _peft_model(obj, name)
    _fresh_copy(obj, reference, name)
    return _same_logits(reference, obj, f"`{name}`")


@_register("ex02_q1", 2, ("reloaded",))
def _ex02_q1(reloaded, reference) -> str:
    """Lesson 2: a reload with PeftModel.from_pretrained that reproduces the saved model's logits."""
    return _reload_reproduces(reloaded, reference, "reloaded")


@_register("ex02_q2", 2, ("multi",))
def _ex02_q2(multi, reference) -> str:
    """Lesson 2: the adapter loaded into an existing PeftModel under the name 'reloaded', and active."""
    multi = _peft_model(multi, "multi")
    _fresh_copy(multi, reference, "multi")
    names = sorted(multi.peft_config)
    _require("reloaded" in names, f"`multi` has no adapter named 'reloaded' (it has {names}).")
    _require(multi.active_adapter == "reloaded",
             f"the active adapter is {multi.active_adapter!r}: loading an adapter into a PeftModel does not "
             "activate it.")
    return "'reloaded' is active and gives " + _same_logits(reference, multi, "the 'reloaded' adapter")


@_register("ex02_q3", 2, ("trainable",))
def _ex02_q3(trainable, reference) -> str:
    """Lesson 2: a reload that can be trained further: LoRA weights require grad, the base stays frozen."""
    trainable = _peft_model(trainable, "trainable")
    _fresh_copy(trainable, reference, "trainable")
    n_lora = sum(p.requires_grad for _, p in _lora_params(trainable))
    _require(n_lora > 0, "0 LoRA parameters require grad: an adapter is reloaded frozen unless you ask otherwise.")
    _require(n_lora == len(_lora_params(trainable)), "some LoRA parameters are still frozen.")
    n_base = sum(p.requires_grad for _, p in _base_params(trainable))
    _require(n_base == 0, f"{n_base} base-model parameters require grad: training would change the base too.")
    return f"{n_lora} LoRA tensors trainable, base frozen, " + _same_logits(reference, trainable, "`trainable`")


# ------------------------------------------------------------------------------- exercise 3
@_register("ex03_q1", 2, ("fixed",))
def _ex03_q1(fixed, reference) -> str:
    """Lesson 3: the colleague's adapter, reloaded from the subfolder its name put it in."""
    return _reload_reproduces(fixed, reference, "fixed")


@_register("ex03_q2", 2, ("config",))
def _ex03_q2(config) -> str:
    """Lesson 3: a LoraConfig whose target_modules exist in GPT-2: the fused q/k/v projection of every layer."""
    _require(isinstance(config, LoraConfig), f"`config` is a {type(config).__name__}, not a LoraConfig.")
    base = load_base_model()
    try:
        model = get_peft_model(base, copy.deepcopy(config))
    except ValueError as exc:
        first = first_line(exc, 160)
        raise _Wrong(f"get_peft_model still fails with it: {type(exc).__name__}: {first}") from None
    leaves = _lora_leaf_names(model)
    _require(set(leaves) == {"c_attn"}, f"LoRA lands on {sorted(leaves)}: the attention's q/k/v projection is "
                                        "one module in GPT-2; target only that one.")
    n_layers = base.config.n_layer
    _require(leaves["c_attn"] == n_layers, f"LoRA lands on {leaves['c_attn']} of the {n_layers} layers: "
                                           "target the module name in every layer.")
    return f"LoRA on the q/k/v projection of all {n_layers} layers"


@_register("ex03_q3", 2, ("spanish_model",))
def _ex03_q3(spanish_model) -> str:
    """Lesson 3: the Spanish adapter made active by its real name, the NER adapter still loaded."""
    model = _peft_model(spanish_model, "spanish_model")
    names = sorted(model.peft_config)
    _require("english_ner" in names, f"the model has {names}: keep english_ner loaded and switch, do not rebuild.")
    _require(model.active_adapter == "spanish_sentiment",
             f"the active adapter is {model.active_adapter!r}, not the Spanish one.")
    return "spanish_sentiment active, " + _same_logits(_shipped("spanish_sentiment"), model, "the active adapter")


# ------------------------------------------------------------------------------- exercise 4
def _dtype_counts(params) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, p in params:
        key = str(p.dtype).replace("torch.", "")
        counts[key] = counts.get(key, 0) + 1
    return counts


def _lora_weights_match(model, reference, atol: float) -> None:
    ref = dict(_lora_params(reference))
    mine = dict(_lora_params(model))
    _require(set(mine) == set(ref), "its LoRA layers are not the ones saved in `folder`.")
    worst = max(float((mine[n].detach().float().cpu() - ref[n].detach().float().cpu()).abs().max()) for n in ref)
    _require(worst <= atol, f"its LoRA weights differ from the saved ones by up to {worst:.1e}: load them from "
                            "`folder`.")


@_register("ex04_q1", 2, ("bf16_model",))
def _ex04_q1(bf16_model, reference) -> str:
    """Lesson 4: a bfloat16 base with the saved adapter on top (LoRA weights stay float32 by default)."""
    model = _peft_model(bf16_model, "bf16_model")
    base = _dtype_counts(_base_params(model))
    _require(set(base) == {"bfloat16"}, f"the base parameters are {base}: load the base itself in bfloat16.")
    _lora_weights_match(model, reference, atol=1e-2)
    lora = _dtype_counts(_lora_params(model))
    detail = _same_logits(reference, model, "the bfloat16 model", atol=BF16_ATOL)
    return f"base bfloat16, LoRA {', '.join(lora)}; {detail}"


@_register("ex04_q2", 2, ("fixed",))
def _ex04_q2(fixed, reference) -> str:
    """Lesson 4: a model with one layer left in bfloat16, cast back so that every parameter is float32."""
    model = _peft_model(fixed, "fixed")
    counts = _dtype_counts(model.named_parameters())
    _require(set(counts) == {"float32"}, f"its parameters are {counts}: every parameter should be float32.")
    _lora_weights_match(model, reference, atol=0.0)
    return "every parameter float32, " + _same_logits(reference, model, "`fixed`", atol=REPAIRED_ATOL)


@_register("ex04_q3", 2, ("placed", "device"))
def _ex04_q3(placed, device, reference) -> str:
    """Lesson 4: the whole model on the best device of this machine."""
    model = _peft_model(placed, "placed")
    best = device_name()
    _require(str(device) == best, f"device {str(device)!r} is not the best one here: ask course_utils, do not "
                                  "hard-code it.")
    where: dict[str, int] = {}
    for _, p in list(model.named_parameters()) + list(model.named_buffers()):
        where[p.device.type] = where.get(p.device.type, 0) + 1
    _require(set(where) == {best}, f"the tensors sit on {len(where)} device(s), {where}: every parameter and "
                                   f"buffer should be on {best}.")
    return f"all {sum(where.values())} tensors on {best}, " + _same_logits(reference, model, "`placed`",
                                                                           atol=REPAIRED_ATOL)


# ------------------------------------------------------------------------------- exercise 5
def _adapter_matches_shipped(model, name: str) -> None:
    shipped = load_file(str(shipped_adapter(name) / WEIGHTS_FILE))
    mine = get_peft_model_state_dict(model, adapter_name=name)
    _require(set(mine) == set(shipped), f"the adapter named {name!r} does not have the shipped {name} layers.")
    _require(all(bool((mine[k].detach().cpu().float() == shipped[k].float()).all()) for k in shipped),
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
    _require(model.active_adapter == "english_ner", f"the active adapter is {model.active_adapter!r}, "
                                                    "not english_ner.")
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
                 f"no {name}/adapter_config.json under the folder: save both adapters in one folder.")
        _adapter_folder(sub)
        _same_logits(_shipped(name), _reload(sub), f"the {name} adapter reloaded from {name}/")
    return "each adapter reloads from its subfolder and gives the shipped adapter's logits"


# ------------------------------------------------------------------- exercises 6 and 7 (checks_advanced.py)
register_advanced_checks(_register, _Wrong)
