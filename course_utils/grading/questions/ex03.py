"""Exercise 3 (lesson 3, gotchas and error recovery): the judges of its questions."""
from __future__ import annotations

import copy

from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

from ...adapter_format import WEIGHTS_FILE
from ...messages import first_line
from ...models import load_base_model
from ...shipped import shipped_adapter
from ..evidence import Evidence
from .common import (
    Question,
    Wrong,
    active,
    adapter_folder,
    folder,
    holds_file,
    loaded_from,
    lora_leaf_names,
    notebook_type,
    peft_model,
    reload,
    require,
    same_logits,
    shipped,
    whole_number,
)
from .given import RANK_SEED, reference


def _q1(ev: Evidence) -> str:
    """Lesson 3: the colleague's adapter, reloaded from the subfolder its name put it in."""
    shared = folder(ev, "shared")
    subfolders = sorted(p for p in shared.iterdir() if (p / WEIGHTS_FILE).is_file())
    require(subfolders, f"no adapter under {shared.name}: run the given cell again.")
    return loaded_from(ev, "fixed", subfolders[0], reference(0, "sentiment", ("c_attn",)), "reference")


def _q2(ev: Evidence) -> str:
    """Lesson 3: a config whose target_modules exist in GPT-2: the fused q/k/v projection of every layer."""
    config = ev.value("config")
    notebook_type(config, "config")
    require(isinstance(config, LoraConfig), f"`config` is a {getattr(config, 'type_name', type(config).__name__)}, "
                                            "not a LoraConfig.")
    rank = whole_number(config.r, "r")
    require(rank == 8, f"the config has rank r={rank}; the task asks for rank 8.")
    base = load_base_model()
    try:
        model = get_peft_model(base, copy.deepcopy(config))
    except ValueError as exc:
        raise Wrong(f"get_peft_model still fails with it: {type(exc).__name__}: {first_line(exc, 160)}") from None
    leaves = lora_leaf_names(model)
    require(set(leaves) == {"c_attn"}, f"LoRA lands on {sorted(leaves)}: the attention's q/k/v projection is "
                                       "one module in GPT-2; target only that one.")
    n_layers = base.config.n_layer
    require(leaves["c_attn"] == n_layers, f"LoRA lands on {leaves['c_attn']} of the {n_layers} layers: "
                                          "target the module name in every layer.")
    return f"rank 8, LoRA on the q/k/v projection of all {n_layers} layers"


def _q3(ev: Evidence) -> str:
    """Lesson 3: the Spanish adapter made active (under any name), the NER adapter still loaded."""
    model = peft_model(ev, "spanish_model")
    names = sorted(model.peft_config)
    ner = shipped_adapter("english_ner") / WEIGHTS_FILE
    require(any(holds_file(model, n, ner) for n in names),
            f"no adapter of the model ({names}) holds english_ner's weights: keep it loaded and switch.")
    now = active(model, "spanish_model")
    require(holds_file(model, now, shipped_adapter("spanish_sentiment") / WEIGHTS_FILE),
            f"the active adapter {now!r} does not hold the Spanish sentiment adapter's weights.")
    return f"{now!r} (the Spanish adapter) active, english_ner kept, " + same_logits(
        shipped("spanish_sentiment"), model, "the active adapter")


def _q4(ev: Evidence) -> str:
    """Lesson 3: a folder broken in a way the lesson did not show (config rank edited), repaired so it reloads."""
    path = folder(ev, "repaired")
    adapter_folder(path)
    require((path / WEIGHTS_FILE).is_file(), f"no {WEIGHTS_FILE} in the folder: keep the colleague's weights file.")
    try:
        model = reload(path)
    except Exception as exc:  # noqa: BLE001 - any load error is the learner's feedback
        raise Wrong(f"the folder still does not load: {type(exc).__name__}: {first_line(exc, 140)}") from None
    expected = reference(RANK_SEED)
    mine, theirs = get_peft_model_state_dict(model), get_peft_model_state_dict(expected)
    require(set(mine) == set(theirs) and all((mine[k] == theirs[k]).all() for k in theirs),
            f"{WEIGHTS_FILE} no longer holds the colleague's trained weights: repair the config, keep the weights.")
    return "the repaired folder reloads and " + same_logits(expected, model, "the repaired adapter")


QUESTIONS = (
    Question("ex03_q1", 2, ("fixed",), _q1, ("shared", "reference")),
    Question("ex03_q2", 2, ("config",), _q2),
    Question("ex03_q3", 2, ("spanish_model",), _q3),
    Question("ex03_q4", 3, ("repaired",), _q4),
)
