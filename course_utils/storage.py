"""How many bytes a full model and a LoRA adapter take, computed from module shapes (no weights needed).

Defined in lesson 1 (``full_model_bytes``, ``adapter_bytes``, ``rank_explorer``). A transformers config is
instantiated on the ``meta`` device, so the 124M GPT-2 costs no memory and downloads nothing.
"""
from __future__ import annotations

import ipywidgets as w
import torch
from transformers import AutoModelForCausalLM, PretrainedConfig

from .adapter_format import in_out_features, matches_target, unmatched_targets
from .target_modules import linear_module_names

DEFAULT_TARGETS = ("c_attn", "c_proj", "c_fc")  # GPT-2's; other architectures offer their own linear_module_names


def as_model(model_or_config):
    """``model_or_config`` itself if it is a torch module, else a model built from the config on ``meta``."""
    if isinstance(model_or_config, torch.nn.Module):
        return model_or_config
    if not isinstance(model_or_config, PretrainedConfig):
        raise TypeError(f"Expected a model or a transformers config (e.g. GPT2Config()), "
                        f"got {type(model_or_config).__name__}.")
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(model_or_config)


def full_model_bytes(model_or_config) -> int:
    """Bytes of all parameters: numel x element size of each, tied tensors once (what a checkpoint stores)."""
    return sum(p.numel() * p.element_size() for p in as_model(model_or_config).parameters())


def target_shapes(model_or_config, targets) -> dict[str, tuple[int, int]]:
    """``{module name: (in, out)}`` for every layer whose name ends with one of ``targets`` (peft's rule)."""
    if isinstance(targets, str):
        targets = [targets]
    targets = list(targets)
    if not targets:
        raise ValueError("targets is empty: name at least one module type, e.g. ['c_attn'].")
    model = as_model(model_or_config)
    found = {}
    for name, module in model.named_modules():
        shape = in_out_features(module)
        if shape and matches_target(name, targets) and not hasattr(module, "num_embeddings"):
            found[name] = shape
    missing = sorted(unmatched_targets(targets, found))
    if missing:
        raise ValueError(f"Target modules {missing} not found in the model: use names such as "
                         f"{', '.join(linear_module_names(model))} for this {type(model).__name__}.")
    return found


def default_targets(model_or_config) -> tuple[str, ...]:
    """GPT-2's ``DEFAULT_TARGETS`` when the model has them all, else its own ``linear_module_names``."""
    model = as_model(model_or_config)
    names = [name for name, _ in model.named_modules()]
    return DEFAULT_TARGETS if not unmatched_targets(DEFAULT_TARGETS, names) else tuple(linear_module_names(model))


def lora_parameter_count(model_or_config, r: int, targets) -> int:
    """LoRA parameters for rank ``r`` on ``targets``: each (in, out) layer gets A (r x in) and B (out x r)."""
    if not isinstance(r, int) or r < 1:
        raise ValueError(f"The rank r must be a positive integer, got {r!r}.")
    return sum(r * (i + o) for i, o in target_shapes(model_or_config, targets).values())


def adapter_bytes(model_or_config, r: int, targets, dtype: torch.dtype = torch.float32) -> int:
    """Bytes of the LoRA weights (the data part of ``adapter_model.safetensors``) in ``dtype``."""
    return lora_parameter_count(model_or_config, r, targets) * torch.empty((), dtype=dtype).element_size()


def describe_sizes(model_or_config, r: int, targets) -> str:
    """One line: adapter bytes, full model bytes and their ratio for rank ``r`` on ``targets``."""
    model = as_model(model_or_config)
    if not targets:
        return "Pick at least one target module to get adapter bytes."
    adapter, full = adapter_bytes(model, r, targets), full_model_bytes(model)
    return (f"r={r}, targets={list(targets)}: {adapter:,} adapter bytes vs {full:,} full-model bytes "
            f"-> the full model is {full / adapter:,.0f}x larger")


def rank_explorer(model_or_config, max_rank: int = 64, targets=None, start_rank: int = 8):
    """An ipywidgets panel: a rank slider and target checkboxes; the text below shows the recomputed sizes.

    ``targets`` defaults to ``default_targets(model)``: GPT-2's three, or another architecture's linear layers.
    """
    model = as_model(model_or_config)
    targets = default_targets(model) if targets is None else targets
    slider = w.IntSlider(value=start_rank, min=1, max=max_rank, description="rank r")
    boxes = [w.Checkbox(value=(i == 0), description=t, indent=False) for i, t in enumerate(targets)]
    text = w.HTML()

    def update(_=None):
        chosen = [b.description for b in boxes if b.value]
        text.value = describe_sizes(model, slider.value, chosen)

    for control in [slider, *boxes]:
        control.observe(update, names="value")
    update()
    box = w.VBox([slider, w.HBox(boxes), text])
    box.add_class("course-rank-control")
    return box
