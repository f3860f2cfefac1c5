"""Which module names a LoRA config can target in a given model.

Defined in lesson 3 (``linear_module_names``): the fix for ``Target modules {...} not found in the base model``.
"""
from __future__ import annotations

import sys

import torch


def _is_linear_like(module) -> bool:
    """A torch ``Linear`` or transformers' GPT-2 ``Conv1D`` (a linear layer with transposed weights)."""
    return isinstance(module, torch.nn.Linear) or (type(module).__name__ == "Conv1D" and hasattr(module, "nf"))


def _tuner_layer_class():
    """peft's ``BaseTunerLayer`` if peft is already imported (a model can hold LoRA layers only then), else None."""
    if "peft" not in sys.modules:
        return None
    # Imported only when peft already is: importing it here would cost seconds for a model without adapters.
    from peft.tuners.tuners_utils import BaseTunerLayer

    return BaseTunerLayer


def linear_module_names(model, include_output_layer: bool = False) -> list[str]:
    """The sorted, distinct last name parts (``c_attn``, ``q_proj``...) of the linear layers LoRA can wrap.

    These are the strings ``LoraConfig(target_modules=[...])`` matches. A layer that already carries a LoRA
    adapter counts under its own name (its inner ``lora_A`` / ``lora_B`` layers do not). The output layer
    (``lm_head``) is left out unless ``include_output_layer``, as peft's ``target_modules="all-linear"`` does.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"linear_module_names needs a torch model (e.g. load_base_model()), got {type(model).__name__}.")
    tuner = _tuner_layer_class()
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names, inside_tuner = set(), []
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix in inside_tuner):
            continue
        is_tuner = tuner is not None and isinstance(module, tuner)
        if is_tuner:
            inside_tuner.append(name)
        if not name or not (is_tuner or _is_linear_like(module)):
            continue
        if module is output and not include_output_layer:
            continue
        names.add(name.rsplit(".", 1)[-1])
    return sorted(names)
