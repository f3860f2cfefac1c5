"""Exercise 3 Q1 answered with transformers' own ``load_adapter`` on a plain base (lesson 3, section 6): the model
is rebuilt by the checker from its recorded tensors and adapter config, and judged as the PeftModel route is."""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from peft import get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file

from ...adapter_format import CONFIG_FILE, is_lora_name
from ...models import load_base_model
from ..evidence import Evidence
from ..rebuild import MODEL_CLASSES, lora_config_from, set_layer_state
from .common import reload, require, same_logits, weights_of

_PLAIN_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>[AB])\.(?P<adapter>[^.]+)\.weight$")


def plain_with_lora(ev: Evidence, name: str) -> tuple[dict, dict] | None:
    """``({adapter: {saved key: tensor}}, {base key: tensor})`` of a transformers model answer that carries LoRA
    layers (transformers' own ``load_adapter`` on a plain base); None for any other answer."""
    entry, info = ev.raw(name), ev.model_info(name)
    if entry.get("t") != "model" or info.get("class") not in MODEL_CLASSES or not info.get("lora_modules"):
        return None
    path = (ev.folder / str(entry.get("dir")) / "state.safetensors").resolve()
    require(path.is_relative_to(ev.folder.resolve()) and path.is_file(), f"the tensors of `{name}` were not saved.")
    adapters: dict = {}
    base: dict = {}
    for key, tensor in load_file(str(path)).items():
        found = _PLAIN_LORA_KEY.match(key)
        if found:
            adapters.setdefault(found["adapter"], {})[
                f"base_model.model.{found['module']}.lora_{found['ab']}.weight"] = tensor
        elif not is_lora_name(key):
            base[key.replace(".base_layer.", ".")] = tensor
    return adapters, base


CONFIG_FIELDS = ("r", "lora_alpha", "use_rslora", "rank_pattern", "alpha_pattern", "target_modules", "use_dora",
                 "lora_bias")
ROUND_TRIP_ATOL = 1e-4   # lesson 3: merging and unmerging is not bit-exact; it stays within this bound


def _config_problem(recorded, saved: dict) -> str | None:
    """Which setting of the adapter config the model carries differs from the folder's ``adapter_config.json``."""
    if not isinstance(recorded, dict):
        return "its adapter config was not recorded"
    for key in CONFIG_FIELDS:
        mine, theirs = recorded.get(key), saved.get(key)
        if key == "target_modules" and isinstance(mine, (list, tuple, set)) and isinstance(theirs, (list, tuple)):
            mine, theirs = sorted(mine), sorted(theirs)
        if (mine or None) != (theirs or None):
            return f"its {key} is {mine!r}, the folder's adapter_config.json says {theirs!r}"
    return None


def q1_plain(ev: Evidence, found: tuple[dict, dict], sub: Path, where: str) -> str:
    """Q1 answered with transformers' load_adapter: its one adapter holds the folder's tensors under the folder's
    config, its base is the course's, and the checker's rebuild of it behaves as the checker's own load."""
    adapters, base = found
    require(len(adapters) == 1, f"`fixed` carries {len(adapters)} adapters ({sorted(adapters)}): load only the "
                                "colleague's.")
    ((name, mine),) = adapters.items()
    weights = weights_of(sub)
    require(set(mine) == set(weights) and all(torch.equal(mine[k].float(), weights[k].float()) for k in weights),
            f"the adapter of `fixed` does not hold the weights saved in `shared` (in {where}/): load it from that "
            "folder, not from another model or a recipe (and under a name the folder's tensors fit).")
    course = load_base_model().state_dict()
    require(all(k in base and torch.equal(base[k].float(), v.float()) for k, v in course.items()
                if k != "lm_head.weight"), "the base model under `fixed` is not the course's own: use a fresh one.")
    saved = json.loads((sub / CONFIG_FILE).read_text(encoding="utf-8"))
    recorded = (ev.model_info("fixed").get("adapters") or {}).get(name)
    problem = _config_problem(recorded, saved)
    require(problem is None, f"the adapter of `fixed` is not set up as the colleague saved it ({problem}): load "
                             "the folder's config with its weights (lesson 3, section 6).")
    model = get_peft_model(load_base_model(), lora_config_from(recorded, for_rebuild=True), adapter_name=name)
    set_peft_model_state_dict(model, mine, adapter_name=name)
    model = _as_recorded(ev, model)
    return f"loaded from {where}/ with transformers' load_adapter, as saved; " + same_logits(
        reload(sub), model, "`fixed`", atol=ROUND_TRIP_ATOL)


def _as_recorded(ev: Evidence, model):
    """``model`` with its LoRA layers as the evidence recorded them (switched off, scaled, merged)."""
    states = ev.model_info("fixed").get("lora_state")
    if isinstance(states, dict):
        set_layer_state(model, {f"base_model.model.{name}": state for name, state in states.items()})
    return model
