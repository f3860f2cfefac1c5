"""A labelled simulation of DeepSpeed ZeRO-3's partitioned parameters, in one CPU process (lesson 9, section 5).

Under ZeRO-3 each GPU (a *rank*) keeps a slice of every parameter, and the parameter's own ``.data`` is an empty
tensor (shape ``[0]``) until DeepSpeed gathers it, for a forward pass or for a save that asks for it. A plain
``model.save_pretrained(out)`` therefore writes tensors of shape ``[0]``. ``simulate_zero3`` does the same to a
model here: each parameter is cut into ``ranks`` flat slices, kept on the parameter as ``ds_shards`` (DeepSpeed
keeps the local one as ``ds_tensor``), and its ``.data`` is emptied. ``gathered_state_dict`` joins the slices again,
as ``accelerator.get_state_dict(model)`` gathers them from the real ranks.

What is not simulated: there is one process and no communication, and no hooks gather the weights for a forward
pass, so a simulated model cannot compute. Exercise 9 makes its teammate's empty save with it.
"""
from __future__ import annotations

import torch

LABEL = "SIMULATED ZeRO-3 (one CPU process, no DeepSpeed)"


def simulate_zero3(model: torch.nn.Module, ranks: int = 2) -> str:
    """Partition every parameter of ``model`` in place as ZeRO-3 would across ``ranks`` GPUs: its slices are kept
    aside and its ``.data`` becomes a tensor of shape ``[0]``. Returns a one-line label saying what was done."""
    if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
        raise ValueError(f"ranks must be a whole number of at least 1, got {ranks!r}.")
    params = list(model.parameters())
    if any(hasattr(p, "ds_shards") for p in params):
        raise ValueError("this model is already partitioned by simulate_zero3.")
    for p in params:
        p.ds_shape = p.shape
        p.ds_shards = [s.clone() for s in torch.tensor_split(p.detach().reshape(-1), ranks)]
        p.data = torch.empty(0, dtype=p.dtype, device=p.device)
    return (f"{LABEL}: {len(params)} parameters cut into {ranks} slices each, one per pretend rank; "
            "every parameter's .data now has shape [0]")


def gathered_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` with each partitioned parameter joined back from its slices (what
    ``accelerator.get_state_dict(model)`` returns under ZeRO-3). The model itself stays partitioned."""
    state = model.state_dict(keep_vars=True)
    if not any(hasattr(v, "ds_shards") for v in state.values()):
        raise ValueError("no parameter of this model is partitioned: simulate_zero3(model) was not called on it.")
    return {k: (torch.cat(v.ds_shards).reshape(v.ds_shape) if hasattr(v, "ds_shards") else v.detach()).clone()
            for k, v in state.items()}
