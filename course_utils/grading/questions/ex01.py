"""Exercise 1 (lesson 1, saving an adapter): the data it gives (a per-learner task, a teammate's update, folders
for Q4's function) and the judges of its questions."""
from __future__ import annotations

import hashlib
import json
import random
import re
import secrets
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePath, PurePosixPath

import torch
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from safetensors.torch import save_file

from ...adapter_format import CONFIG_FILE, PICKLE_WEIGHTS_FILE, WEIGHTS_FILE, is_lora_name
from ...files import list_files
from ...learner import learner_seed
from ...messages import one_line
from ...models import load_base_model
from ..evidence import Evidence, Opaque, type_name
from .common import (
    Question,
    Wrong,
    active,
    adapter_effect,
    adapter_folder,
    folder,
    holds,
    name_list,
    notebook_type,
    peft_model,
    reload,
    require,
    same_logits,
    weights_of,
    whole_number,
)

RANKS = (2, 3, 4, 5, 6, 8, 12, 16)
ALPHAS = (4, 8, 16, 32)
TARGET_SETS = (("c_attn",), ("c_proj",), ("c_fc",), ("c_attn", "c_proj"), ("c_attn", "c_fc"), ("c_fc", "c_proj"),
               ("c_attn", "c_fc", "c_proj"))
# Where each target name sits in a GPT-2 block (c_proj names two layers: the attention's and the MLP's).
MODULE_PATHS = {"c_attn": ("attn.c_attn",), "c_proj": ("attn.c_proj", "mlp.c_proj"), "c_fc": ("mlp.c_fc",)}
SUMMARY_KEYS = ("r", "n_tensors", "n_numbers")


@dataclass(frozen=True)
class Task:
    """The adapter a learner builds in Q1: its rank, alpha and target modules (on every transformer block)."""
    r: int
    lora_alpha: int
    targets: tuple[str, ...]


@lru_cache(maxsize=16)
def task_for_seed(seed: int, salt: str = "q1") -> Task:
    rng = random.Random(f"ex01:{salt}:{seed}")
    return Task(rng.choice(RANKS), rng.choice(ALPHAS), rng.choice(TARGET_SETS))


def adapter_task(learner: str) -> Task:
    """Exercise 1's given cell: print the learner's Q1 task (rank, alpha, targets) and return it."""
    task = task_for_seed(learner_seed(learner))
    print(f"Your adapter: r={task.r}, lora_alpha={task.lora_alpha}, target_modules={list(task.targets)}, "
          "on every transformer block.")
    return task


def _weights_path(path: Path) -> Path | None:
    """The weights file peft would load from ``path`` (safetensors first), or None."""
    for name in (WEIGHTS_FILE, PICKLE_WEIGHTS_FILE):
        if (path / name).is_file():
            return path / name
    return None


def teammate_update(path) -> bool:
    """Exercise 1: a teammate's tool adds a notes file of its own and overwrites some of the tensors in ``path``
    (in the format it finds there).

    Which tensors, and the notes file's name, are random: they can only be found by reading the folder (the given
    cell snapshots it for the judge). Returns False, changing nothing and printing nothing, while Q2 is unanswered
    (``path`` None or unsaved): the untouched student copy then runs on to its checks, which say what is missing.
    """
    if not isinstance(path, (str, PurePath)) or _weights_path(Path(path)) is None:
        return False
    path = Path(path)
    for old in path.glob("notes_*.txt"):  # a rerun replaces the notes of the run before
        old.unlink()
    (path / f"notes_{secrets.token_hex(3)}.txt").write_text("retrained some layers\n", encoding="utf-8")
    weights = _weights_path(path)
    state = weights_of(path)
    names = sorted(state)
    rng = random.Random(secrets.randbits(32))
    for key in rng.sample(names, rng.randint(1, len(names) - 1)):
        state[key] = state[key] + 0.01 * torch.randn(state[key].shape, generator=torch.Generator().manual_seed(
            rng.randint(0, 2**31)))
    if weights.name == WEIGHTS_FILE:
        save_file(state, str(weights), metadata={"format": "pt"})
    else:
        torch.save(state, weights)
    return True


def _layer_modules(model, adapter: str) -> set[str]:
    """Names (in the base model) of the modules carrying LoRA for ``adapter``."""
    return {name for name, m in model.get_base_model().named_modules()
            if isinstance(m, LoraLayer) and adapter in m.lora_A}


def _check_layers(model, adapter: str, task: Task) -> int:
    """Every targeted module of every block carries LoRA of rank r scaled by lora_alpha / r; nothing else does."""
    base = model.get_base_model()
    want = [f"transformer.h.{i}.{p}" for i in range(base.config.n_layer) for t in task.targets
            for p in MODULE_PATHS[t]]
    have = _layer_modules(model, adapter)
    missing = [n for n in want if n not in have]
    if missing:
        raise Wrong(f"{len(missing)} of the {len(want)} targeted modules carry no LoRA, e.g. {missing[0]}: the task "
                    "asks for every transformer block (lesson 1, section 1: target_modules).")
    extra = sorted(have - set(want))
    if extra:
        raise Wrong(f"LoRA also sits on {len(extra)} module(s) the task does not target, e.g. {extra[0]}.")
    for name in want:
        layer = base.get_submodule(name)
        ranks = {layer.lora_A[adapter].weight.shape[0], layer.lora_B[adapter].weight.shape[1]}
        require(ranks == {task.r}, f"{name} has rank {max(ranks)}; your task (printed by the given cell) asks for "
                                   f"r={task.r} on every module (r and rank_pattern set the rank per module).")
        scale = layer.scaling[adapter]
        require(abs(scale - task.lora_alpha / task.r) < 1e-9,
                f"{name} scales its update by {scale:g}, not lora_alpha / r = {task.lora_alpha}/{task.r} "
                "(alpha_pattern or use_rslora change the scale).")
    return len(want)


def _q1(ev: Evidence) -> str:
    """Lesson 1: the learner's LoRA task (rank, alpha, targets from the seed) on every block, trained a little."""
    task = task_for_seed(ev.seed)
    model = peft_model(ev, "model")
    adapter = active(model, "model")
    config = model.peft_config[adapter]
    require(config.peft_type.value == "LORA", f"the adapter is {config.peft_type}, not LoRA.")
    require(not config.use_dora, "the adapter uses DoRA (use_dora=True): the task asks for plain LoRA.")
    n_modules = _check_layers(model, adapter, task)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    require(trainable and all(is_lora_name(n) for n in trainable),
            "only the LoRA weights should be trainable (the base stays frozen).")
    require(adapter_effect(model) > 1e-4, "the adapter does not change the output yet: a new adapter's LoRA B "
                                          "matrices are zero until it is trained (lesson 1, section 3).")
    return f"LoRA r={task.r} on all {n_modules} targeted modules, and it changes the logits"


def _q2(ev: Evidence) -> str:
    """Lesson 1: the folder holds the adapter of ``model`` (either format), and it reloads to the same logits."""
    path = folder(ev, "folder")
    adapter_folder(path)
    model = peft_model(ev, "model")
    require(holds(model, active(model, "model"), weights_of(path)),
            "the saved weights file does not hold the weights of `model`: save `model` itself into the folder.")
    kind = "safetensors" if (path / WEIGHTS_FILE).is_file() else "pickle (.bin)"
    return f"{kind} file; the folder reloads with PeftModel.from_pretrained: " + same_logits(
        model, reload(path), "the reloaded adapter")


def _q3(ev: Evidence) -> str:
    """Lesson 1: the list of files in the folder (the teammate's notes file included), read from the folder."""
    path = folder(ev, "folder")
    names = [PurePosixPath(n).as_posix() if not Path(n).is_absolute() else str(n)
             for n in name_list(ev.value("files"), "files")]
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


def summary_cases(seed: int) -> list[tuple[str, Task, bool]]:
    """Q4's folders the learner never sees: (case name, adapter task, saved as safetensors?), from the seed."""
    return [("a safetensors folder", task_for_seed(seed, "q4a"), True),
            ("a .bin folder (safe_serialization=False)", task_for_seed(seed, "q4b"), False),
            ("another safetensors folder", task_for_seed(seed, "q4c"), True)]


def _config(task: Task) -> LoraConfig:
    return LoraConfig(r=task.r, lora_alpha=task.lora_alpha, target_modules=list(task.targets))


ALTERED = ("a folder whose weights file lacks tensors its config implies",
           "a folder whose weights file holds an extra tensor")


def _alter(path: Path, extra: bool) -> None:
    """Make the weights file in ``path`` differ from what its config implies (``secrets``-random): some tensors
    removed, or one more tensor of a random shape. Only reading the file tells."""
    weights = _weights_path(path)
    state = weights_of(path)
    rng = random.Random(secrets.randbits(64))
    if extra:
        state[f"base_model.model.extra_{secrets.token_hex(3)}.weight"] = torch.zeros(rng.randint(1, 9),
                                                                                    rng.randint(1, 99))
    else:
        for key in rng.sample(sorted(state), rng.randint(1, len(state) // 2 - 1)):  # some lora_A and B stay
            del state[key]
    if weights.name == WEIGHTS_FILE:
        save_file(state, str(weights), metadata={"format": "pt"})
    else:
        torch.save(state, weights)


def _digest(path: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(path.iterdir()) if p.is_file())).hexdigest()


def _counts(path: Path) -> list[int]:
    """What a right summary of ``path`` says (r from the config; tensors and numbers from the weights file)."""
    return list(_from_folder(path))


def _ask(summary, path: Path):
    """``summary(path)``, or what it raised; this frame holds nothing about the case but the folder."""
    try:
        return summary(path)
    except Exception as exc:  # noqa: BLE001 - the learner's function failed: that is the evidence
        return {"raised": one_line(exc)}


def _probe_q4(answers: dict) -> dict:
    """In the learner's kernel: ``adapter_summary`` run on the learner's folder and on folders saved here (two of
    them altered at random, whose right answers are read from the files after the call)."""
    summary = answers.get("adapter_summary")
    if not callable(summary):
        return {}
    out = {}
    if isinstance(answers.get("folder"), (str, PurePath)):
        out["your folder"] = _ask(summary, Path(answers["folder"]))
    cases = [(case, task, safe, None) for case, task, safe in summary_cases(learner_seed())]
    cases += [(case, task_for_seed(secrets.randbits(32), "q4x"), secrets.randbits(1) == 1, i == 1)
              for i, case in enumerate(ALTERED)]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (case, task, safe, extra) in enumerate(cases):
            target = Path(tmp) / f"adapter_{i}"
            get_peft_model(load_base_model(), _config(task)).save_pretrained(target, safe_serialization=safe)
            if extra is not None:
                _alter(target, extra)
            digest = _digest(target)  # tells whether the function changed the folder, not what it holds
            out[case] = _ask(summary, target)
            if extra is not None:
                out[f"{case}: held"] = _counts(target) if _digest(target) == digest else "changed by the function"
    return out


@lru_cache(maxsize=16)
def _expected(task: Task) -> tuple[int, int, int]:
    state = get_peft_model_state_dict(get_peft_model(load_base_model(), _config(task)))
    return task.r, len(state), sum(t.numel() for t in state.values())


def _from_folder(path: Path) -> tuple[int, int, int]:
    """r as the folder's config gives it, and the tensors and numbers its weights file holds."""
    state = weights_of(path)
    rank = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8")).get("r")
    return rank, len(state), sum(t.numel() for t in state.values())


def _summary_problem(case: str, answer, expected: tuple[int, int, int]) -> str | None:
    """Why ``answer`` is not the right summary of ``case`` (None when it is)."""
    if isinstance(answer, dict) and "raised" in answer:
        return f"it raised {answer['raised']} on {case}"
    notebook_type(answer, "adapter_summary(...)")
    if not isinstance(answer, dict) or sorted(map(str, answer)) != sorted(SUMMARY_KEYS):
        return f"on {case} it returned a {type_name(answer)}, not a dict with the keys {', '.join(SUMMARY_KEYS)}"
    for key, want in zip(SUMMARY_KEYS, expected):
        got = whole_number(answer[key], f"{key} ({case})")
        if got != want:
            return f"on {case} it says {key}={got}, but the folder holds {want}"
    return None


def _q4(ev: Evidence) -> str:
    """Lesson 1 (sections 5-7): a function that reads r, the tensor count and the number count from any adapter
    folder, run on the learner's folder and on seeded folders in both formats."""
    path = folder(ev, "folder")
    adapter_folder(path)
    fn = ev.value("adapter_summary")
    notebook_type(fn, "adapter_summary")
    require(isinstance(fn, Opaque) and fn.function, f"`adapter_summary` should be a function, not a "
                                                    f"{type_name(fn)}.")
    cases = [("your folder", _from_folder(path))]
    cases += [(case, _expected(task)) for case, task, _ in summary_cases(ev.seed)]
    for case in ALTERED:
        held = ev.probe(f"{case}: held")
        require(isinstance(held, list) and len(held) == 3, f"`adapter_summary` changed the folder it was given "
                                                            f"({case}): it should only read it.")
        cases.append((case, tuple(held)))
    problems = [p for case, want in cases if (p := _summary_problem(case, ev.probe(case), want))]
    if problems:
        raise Wrong(f"wrong on {len(problems)} of {len(cases)} folders: {problems[0]} (read the config for r and the "
                    "weights file for the tensors, lesson 1 sections 5-7).")
    return f"right on all {len(cases)} folders, both formats, altered weights files included"


_PREFIX = "base_model.model."
_ADAPTER_IN_KEY = r"\.(lora_[AB])\.[^.]+\.weight$"


def _file_key(name: str) -> str:
    """A model parameter name as the weights file spells it (without the adapter's name), less any
    ``base_model.model.`` prefix: names of ``model``, of ``model.get_base_model()`` and of the file then agree."""
    name = re.sub(_ADAPTER_IN_KEY, r".\1.weight", str(name))
    while name.startswith(_PREFIX):
        name = name[len(_PREFIX):]
    return name


def _baseline(ev: Evidence):
    """The model as it was saved in Q2, and the folder as the teammate left it (both taken when those cells ended)."""
    saved = ev.earlier("ex01_q2")
    require(saved is not None and saved.has("model"), "Q2's check has not run: save the model and run Q2's check "
                                                      "before the teammate's cell.")
    left = ev.earlier("ex01_given_teammate")
    require(left is not None and isinstance(left.value("folder"), Path) and left.value("folder").is_dir(),
            "the teammate's cell has not run on your saved folder: run it after Q2.")
    return peft_model(saved, "model"), left.value("folder")


def _drift(ev: Evidence, model, mine: dict, file_state: dict) -> str:
    """Why comparing what the model and the folder hold now can mislead (empty when nothing moved)."""
    notes = []
    try:
        now = peft_model(ev, "model")
        if not holds(now, active(now, "model"), mine):
            notes.append("`model` no longer holds what you saved in Q2 (loading the file into it overwrites it)")
    except Wrong:
        pass
    path = ev.value("folder")
    if isinstance(path, Path) and path.is_dir() and _weights_path(path) is not None:
        current = weights_of(path)
        if set(current) != set(file_state) or any(not torch.equal(current[k], file_state[k]) for k in file_state):
            notes.append("the folder no longer holds what the teammate left (it was saved over)")
    return f" Note: {'; '.join(notes)}: rerun from Q2's cell." if notes else ""


def _q5(ev: Evidence) -> str:
    """Lesson 1: which tensors of the teammate's file differ from the model saved in Q2 (a random subset)."""
    answer = name_list(ev.value("changed"), "changed")
    model, left = _baseline(ev)
    file_state = weights_of(left)
    mine = get_peft_model_state_dict(model, adapter_name=active(model, "model"))
    spelled = {_file_key(k): k for k in file_state}
    names = {spelled.get(_file_key(n), str(n)) for n in answer}
    require(set(mine) == set(file_state), "the teammate's file and the model you saved in Q2 do not hold the same "
                                          "tensors: save `model` in Q2, then run the teammate's cell.")
    unknown = sorted(names - set(file_state))
    if unknown:
        raise Wrong(f"{len(unknown)} name(s) are not tensors of the weights file, e.g. {unknown[0]!r}.")
    actual = {k for k in file_state if not torch.equal(file_state[k], mine[k].detach().cpu())}
    require(actual, "the teammate's update did not run (its file holds exactly the model you saved in Q2): run the "
                    "notebook from Q2.")
    drift = _drift(ev, model, mine, file_state)
    require(not names - actual, f"{len(names - actual)} of your tensors are the same in the teammate's file and in "
                                f"the model you saved.{drift}")
    require(not actual - names, f"{len(actual - names)} changed tensor(s) are missing from your answer.{drift}")
    return "you found exactly the tensors the teammate changed"


QUESTIONS = (
    Question("ex01_q1", 2, ("model",), _q1),
    Question("ex01_q2", 2, ("folder", "model"), _q2),
    Question("ex01_q3", 1, ("files", "folder"), _q3),
    Question("ex01_q4", 2, ("adapter_summary",), _q4, ("folder",), _probe_q4),
    Question("ex01_q5", 3, ("changed", "folder", "model"), _q5),
)
