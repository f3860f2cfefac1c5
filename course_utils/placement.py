"""Where a model's weights live: a per-(device, dtype, base|lora) table and a one-device check.

Defined in lesson 4 (``placement_report``, ``assert_single_device``).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch

from .adapter_format import is_lora_name


@dataclass(frozen=True)
class PlacementRow:
    """One group of parameters: ``tensors`` parameters holding ``elements`` numbers in all."""

    device: str
    dtype: str
    kind: str  # "base" or "lora"
    tensors: int
    elements: int


@dataclass(frozen=True)
class PlacementReport:
    """The rows of ``placement_report``; ``print`` it for a small table."""

    rows: tuple[PlacementRow, ...]

    @property
    def devices(self) -> list[str]:
        return sorted({r.device for r in self.rows})

    @property
    def dtypes(self) -> dict[str, list[str]]:
        """``{"base": [...], "lora": [...]}``: the dtypes each kind of parameter uses."""
        out: dict[str, set[str]] = defaultdict(set)
        for r in self.rows:
            out[r.kind].add(r.dtype)
        return {k: sorted(v) for k, v in sorted(out.items())}

    def __str__(self) -> str:
        head = ("device", "dtype", "kind", "tensors", "elements")
        body = [(r.device, r.dtype, r.kind, str(r.tensors), f"{r.elements:,}") for r in self.rows]
        widths = [max(len(x) for x in col) for col in zip(head, *body)]
        fmt = lambda cells: "  ".join(c.rjust(w) if i >= 3 else c.ljust(w)  # noqa: E731
                                      for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
        return "\n".join([fmt(head)] + [fmt(b) for b in body])


def _kind(name: str) -> str:
    return "lora" if is_lora_name(name) else "base"


def _named_parameters(model):
    if not hasattr(model, "named_parameters"):
        raise TypeError(f"placement_report needs a torch model (nn.Module), got {type(model).__name__}.")
    return list(model.named_parameters())


def placement_report(model) -> PlacementReport:
    """Group ``model``'s parameters by (device, dtype, "base" or "lora"): counts of tensors and elements.

    A parameter is "lora" when a part of its name starts with ``lora_`` (``lora_A``, ``lora_B``,
    ``lora_embedding_A``...). Shared (tied) parameters are counted once, as ``named_parameters`` does.
    """
    groups: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for name, p in _named_parameters(model):
        g = groups[(str(p.device), str(p.dtype).removeprefix("torch."), _kind(name))]
        g[0] += 1
        g[1] += p.numel()
    rows = tuple(PlacementRow(d, t, k, n, e) for (d, t, k), (n, e) in sorted(groups.items()))
    return PlacementReport(rows)


def assert_single_device(model) -> str:
    """Return the one device all of ``model``'s parameters are on; raise ``RuntimeError`` (one line) if not.

    The message names the parameters that are not on the device holding most of them.
    """
    params = _named_parameters(model)
    if not params:
        raise ValueError(f"{type(model).__name__} has no parameters: there is nothing to place.")
    by_device: dict[str, list[str]] = defaultdict(list)
    for name, p in params:
        by_device[str(p.device)].append(name)
    if len(by_device) == 1:
        return next(iter(by_device))
    main = max(by_device, key=lambda d: len(by_device[d]))
    stray = [f"{n} ({d})" for d, names in sorted(by_device.items()) if d != main for n in names]
    shown = ", ".join(stray[:3]) + (f" and {len(stray) - 3} more" if len(stray) > 3 else "")
    raise RuntimeError(f"{len(stray)} parameter(s) are not on {main} like the other {len(by_device[main])}: "
                       f"{shown}. Move the whole model with model.to({main!r}) (or reload the stray adapter).")


def device_name() -> str:
    """``cuda``, ``mps`` or ``cpu``: the best device torch can use here (lesson 4 teaches the choice)."""
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"
