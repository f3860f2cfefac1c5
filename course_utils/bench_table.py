"""What ``make bench`` measured on the full-size GPT-2, as the few rows a lesson needs.

Defined in lesson 1 (``bench_table``); lessons 2 and 5 use it too. The numbers come from
``course_utils/data/bench_results.json`` (package data), which ``make bench`` writes (``course_utils.maintenance.bench``)
on the machine it names;
a lesson reads them, it does not measure them. Re-run ``make bench`` to get your machine's numbers.
"""
from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "data" / "bench_results.json"
MIB = 1024 * 1024


def load_results(path: str | Path = RESULTS) -> dict:
    """The parsed results file; a missing or unreadable one is a one-line error naming the command to run."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist: run `make bench` first (a few minutes), "
                                "then run this cell again.") from None
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}): run `make bench` again to rewrite it.") from None


def _size_row(results: dict, model: str, rank: int, targets: str) -> dict:
    for row in results["sizes"]:
        if row["model"] == model and row["rank"] == rank and row["targets"] == targets:
            return row
    known = sorted({(r["rank"], r["targets"]) for r in results["sizes"] if r["model"] == model})
    raise ValueError(f"make bench did not measure r={rank} on {targets} for {model}; it has {known}.")


def _measure(results: dict, model: str, key: str) -> dict:
    for row in results["measures"]:
        if row["model"] == model and row["key"] == key:
            return row
    known = sorted({r["key"] for r in results["measures"] if r["model"] == model})
    raise ValueError(f"make bench has no operation {key!r} for {model}; it has {known}.")


def bench_table(operations: list[str] = (), sizes: list[tuple[int, str]] = (), model: str = "gpt2-124M",
                path: str | Path = RESULTS) -> str:
    """A small text table of ``make bench`` rows for ``model``.

    ``sizes``: ``(rank, targets)`` pairs, e.g. ``(8, "c_attn")``: the measured adapter file against the full
    model file. ``operations``: keys of timed operations (``save_full``, ``save_adapter``, ``load_full``,
    ``load_full_forward``, ``peft_from_pretrained``, ``load_adapter``, ``hotswap_adapter``, ``set_adapter``).
    """
    results = load_results(path)
    env = results["environment"]
    lines = [f"make bench, {model}: torch {env['torch']}, peft {env['peft']}, {env['machine']} CPU, "
             f"{env['cores']} cores, median of {env['repeats']} runs"]
    if sizes:
        lines.append(f"  {'adapter':28} {'file bytes':>12} {'full model bytes':>17} {'full / adapter':>15}")
        for rank, targets in sizes:
            row = _size_row(results, model, rank, targets)
            label = f"r={rank} {targets}"
            lines.append(f"  {label:28} {row['adapter_bytes']:>12,} {row['full_bytes']:>17,} "
                         f"{row['full_bytes'] / row['adapter_bytes']:>14.0f}x")
    if operations:
        ref = results["reference_adapter"]
        lines.append(f"  {'operation (adapter: r=' + str(ref['r']) + ' ' + ref['targets'] + ')':62} "
                     f"{'median':>10} {'peak RSS':>10}")
        for key in operations:
            row = _measure(results, model, key)
            rss = "n/a" if row["peak_rss_bytes"] is None else f"+{row['peak_rss_bytes'] / MIB:.0f} MiB"
            lines.append(f"  {row['operation']:62} {row['median_ms']:>7.1f} ms {rss:>10}")
    return "\n".join(lines)
