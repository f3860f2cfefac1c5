"""``make bench``: what a LoRA adapter costs on disk, in time and in memory, against the full model.

Run on the shipped tiny model and on the full-size 124M GPT-2 architecture (``GPT2Config()`` defaults,
random weights from a fixed seed, saved once to a cache folder outside the repository and reused).
Writes ``benchmarks/results.md`` (tables), ``benchmarks/results.png`` (plot) and the same numbers as JSON to the
package data file ``course_utils/data/bench_results.json`` (with ``--out``: ``<out>/results.json``), from which
the lessons that call ``course_utils.bench_table`` show rows. Not part of
``make test``; ``tests/test_maintenance_bench.py`` runs it on the tiny model once to prove it works.

What the memory columns mean: **peak RSS delta** is the highest resident set size of this process
during the operation (Linux ``VmHWM`` after resetting it through ``/proc/self/clear_refs``) minus the RSS
just before it: everything the operation made resident, tensors included; a safetensors file read
through ``mmap`` counts its resident pages too. **Python peak** is ``tracemalloc``'s peak: memory
allocated through Python's allocators only; torch tensor storage is invisible to it. Memory is measured
in a separate run from the timings, since tracing allocations slows Python down.
Run by instructors (``make bench``); the lessons show its rows, they do not run it.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import statistics
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.utils.hotswap import hotswap_adapter
from transformers import AutoModelForCausalLM

from ..adapter_format import WEIGHTS_FILE, is_lora_name
from ..assets import course_model
from ..bench_table import RESULTS
from ..lesson_setup import quiet_libraries
from ..versions import installed_version
from .full_size import GPT2_SEED, gpt2_random
from .repo import REPO

RANKS = (4, 8, 16, 64)
TARGETS = {"c_attn": ["c_attn"], "c_attn+c_proj+c_fc": ["c_attn", "c_proj", "c_fc"]}
REFERENCE = (16, "c_attn+c_proj+c_fc")  # the shipped adapters' configuration: used for the load/switch timings
MODELS = ("tiny", "gpt2-124M")
OUT = REPO / "benchmarks"
MIB = 1024 * 1024


def model_dir(name: str, cache: Path | None = None) -> Path:
    if name == "tiny":
        return Path(course_model())
    if name == "gpt2-124M":
        return gpt2_random(cache)
    raise ValueError(f"Unknown bench model {name!r}: choose from {', '.join(MODELS)}.")


# --------------------------------------------------------------------------- measuring
def _rss_kib(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM to the current RSS
        return True
    except OSError:
        return False


@dataclass
class Measure:
    model: str
    operation: str
    seconds: list[float] = field(default_factory=list)
    peak_rss_bytes: int | None = None
    python_peak_bytes: int | None = None
    key: str = ""  # short name the lessons ask for (course_utils.bench_table)

    @property
    def median_ms(self) -> float:
        return 1000 * statistics.median(self.seconds)


def measure(model: str, operation: str, prepare, action, repeats: int) -> Measure:
    """Time ``action(prepare())`` ``repeats`` times (``prepare`` untimed), then once more for memory."""
    m = Measure(model, operation)
    for _ in range(repeats):
        state = prepare()
        gc.collect()
        start = time.perf_counter()
        action(state)
        m.seconds.append(time.perf_counter() - start)
        del state
    state = prepare()
    gc.collect()
    can_peak = _reset_peak_rss()
    before = _rss_kib("VmRSS")
    tracemalloc.start()
    action(state)
    m.python_peak_bytes = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    peak = _rss_kib("VmHWM")
    if can_peak and before is not None and peak is not None:
        m.peak_rss_bytes = max(0, peak - before) * 1024
    del state
    gc.collect()
    return m


@dataclass
class SizeRow:
    model: str
    targets: str
    rank: int
    lora_params: int
    adapter_bytes: int
    full_bytes: int
    save_ms: float


def _lora_config(rank: int, targets: str):
    return LoraConfig(task_type="CAUSAL_LM", r=rank, lora_alpha=2 * rank, target_modules=TARGETS[targets],
                      lora_dropout=0.0, init_lora_weights=False)


def _peft_model(folder: Path, rank: int, targets: str, seed: int = 0):
    base = AutoModelForCausalLM.from_pretrained(folder).eval()
    torch.manual_seed(seed)
    return get_peft_model(base, _lora_config(rank, targets)).eval()


def bench_model(name: str, folder: Path, work: Path, repeats: int) -> tuple[list[SizeRow], list[Measure]]:
    def load_base():
        return AutoModelForCausalLM.from_pretrained(folder).eval()

    counter = iter(range(10**6))

    def fresh(prefix: str) -> Path:
        return work / f"{name}-{prefix}-{next(counter)}"

    full_bytes = (folder / "model.safetensors").stat().st_size
    sizes = []
    for targets in TARGETS:
        for rank in RANKS:
            model = _peft_model(folder, rank, targets)
            params = sum(p.numel() for n, p in model.named_parameters() if is_lora_name(n))
            times = []
            for _ in range(max(1, repeats)):
                out = fresh("adapter")
                start = time.perf_counter()
                model.save_pretrained(out)
                times.append(time.perf_counter() - start)
            sizes.append(SizeRow(name, targets, rank, params, (out / WEIGHTS_FILE).stat().st_size,
                                 full_bytes, 1000 * statistics.median(times)))
            del model

    rank, targets = REFERENCE
    adapter_a, adapter_b = work / f"{name}-ref-a", work / f"{name}-ref-b"
    for seed, path in ((1, adapter_a), (2, adapter_b)):
        _peft_model(folder, rank, targets, seed=seed).save_pretrained(path)
    peft_model = PeftModel.from_pretrained(load_base(), adapter_a, adapter_name="a")
    peft_model.load_adapter(adapter_b, adapter_name="b")
    names = iter(f"extra{i}" for i in range(10**6))

    def load_adapter(m):
        n = next(names)
        m.load_adapter(adapter_b, adapter_name=n)
        m.delete_adapter(n)  # inside the timing: the model returns to the same state every round

    swap_to = iter([adapter_b, adapter_a] * 10**5)
    switch_to = iter(["b", "a"] * 10**5)
    ops = [  # (key used by the lessons, label in the table, untimed preparation, timed action)
        ("save_full", "save full model (save_pretrained)", load_base, lambda m: m.save_pretrained(fresh("full"))),
        ("save_adapter", f"save adapter r={rank} {targets}", lambda: peft_model,
         lambda m: m.save_pretrained(fresh("adapter"))),
        ("load_full", "load full model (AutoModelForCausalLM.from_pretrained)", lambda: None,
         lambda _: AutoModelForCausalLM.from_pretrained(folder)),
        ("load_full_forward", "load full model + one forward pass (pages the weights in)", lambda: None,
         lambda _: _forward(AutoModelForCausalLM.from_pretrained(folder))),
        ("peft_from_pretrained", "PeftModel.from_pretrained(base, adapter), base already loaded", load_base,
         lambda base: PeftModel.from_pretrained(base, adapter_a)),
        ("load_adapter", "PeftModel.load_adapter (second adapter)", lambda: peft_model, load_adapter),
        ("hotswap_adapter", "hotswap_adapter (replace weights in place)", lambda: peft_model,
         lambda m: hotswap_adapter(m, str(next(swap_to)), adapter_name="a")),
        ("set_adapter", "set_adapter (switch between two loaded)", lambda: peft_model,
         lambda m: m.set_adapter(next(switch_to))),
    ]
    measures = []
    for key, label, prepare, action in ops:
        print(f"bench: {name}: {label}", flush=True)
        m = measure(name, label, prepare, action, repeats)
        m.key = key
        measures.append(m)
    return sizes, measures


def _forward(model) -> None:
    with torch.no_grad():
        model(input_ids=torch.tensor([[1, 2, 3, 4]]))


# --------------------------------------------------------------------------- reporting
def _mib(b: int | None) -> str:
    return "n/a" if b is None else f"{b / MIB:.1f}"


def write_markdown(sizes: list[SizeRow], measures: list[Measure], repeats: int, path: Path) -> None:
    env = environment(repeats)
    versions = ", ".join(f"{p} {env[p]}" for p in ("torch", "transformers", "peft", "safetensors"))
    lines = [
        "# Adapter benchmark (`make bench`)",
        "",
        f"Python {env['python']}, {versions}; {env['machine']} CPU, {env['cores']} usable cores. "
        f"Times are medians of {repeats} run{'s' if repeats > 1 else ''}, with the files in the page cache (just written).",
        "Models: `tiny` is the shipped course model; `gpt2-124M` is `GPT2Config()` with random weights "
        f"(seed {GPT2_SEED}), float32. LoRA with `lora_alpha = 2r`.",
        "",
        "## Size on disk: `adapter_model.safetensors` against the full `model.safetensors`",
        "",
        "| model | target modules | r | LoRA params | adapter bytes | full model bytes | full / adapter | save adapter (ms) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in sizes:
        lines.append(f"| {s.model} | {s.targets} | {s.rank} | {s.lora_params:,} | {s.adapter_bytes:,} | "
                     f"{s.full_bytes:,} | {s.full_bytes / s.adapter_bytes:,.1f}x | {s.save_ms:.1f} |")
    lines += [
        "",
        f"## Time and memory (adapter: r={REFERENCE[0]}, {REFERENCE[1]}, the shipped adapters' configuration)",
        "",
        "| model | operation | median (ms) | min-max (ms) | peak RSS delta (MiB) | Python peak (MiB) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for m in measures:
        lines.append(f"| {m.model} | {m.operation} | {m.median_ms:.2f} | {1000 * min(m.seconds):.2f}-"
                     f"{1000 * max(m.seconds):.2f} | {_mib(m.peak_rss_bytes)} | {_mib(m.python_peak_bytes)} |")
    lines += [
        "",
        "Peak RSS delta: the process's highest resident memory during the operation (Linux `VmHWM`, reset "
        "through `/proc/self/clear_refs`) minus its resident memory just before; includes tensors and "
        "memory-mapped file pages; `n/a` where /proc is not available. Python peak: `tracemalloc`'s peak, "
        "Python allocations only (torch tensor storage is not seen). Memory is measured in one extra run "
        "apart from the timed runs. `set_adapter` and `hotswap_adapter` alternate between two adapters; "
        "`PeftModel.load_adapter` includes deleting the loaded adapter again. "
        "`from_pretrained` returns before the weights are read: they stay memory-mapped from the "
        "safetensors file and are paged in by the first forward pass (compare the two full-model load "
        "rows, time and RSS).",
        "",
    ]
    path.write_text("\n".join(lines))


def environment(repeats: int) -> dict:
    """What the numbers were measured with: versions, CPU, cores, repeats."""

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"python": platform.python_version(), "machine": platform.machine(), "cores": cores, "repeats": repeats,
            **{p: installed_version(p) for p in ("torch", "transformers", "peft", "safetensors")}}


def write_json(sizes: list[SizeRow], measures: list[Measure], repeats: int, path: Path) -> None:
    """The tables as JSON, for ``course_utils.bench_table`` (what the lessons show)."""
    data = {
        "environment": environment(repeats),
        "reference_adapter": {"r": REFERENCE[0], "targets": REFERENCE[1]},
        "sizes": [dataclasses.asdict(s) for s in sizes],
        "measures": [{"model": m.model, "key": m.key, "operation": m.operation, "median_ms": round(m.median_ms, 3),
                      "min_ms": round(1000 * min(m.seconds), 3), "max_ms": round(1000 * max(m.seconds), 3),
                      "peak_rss_bytes": m.peak_rss_bytes, "python_peak_bytes": m.python_peak_bytes}
                     for m in measures],
    }
    path.write_text(json.dumps(data, indent=1) + "\n")


def write_plot(sizes: list[SizeRow], measures: list[Measure], path: Path) -> None:
    # Imported here: the Agg backend must be chosen before pyplot is imported, and only for this plot.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [1, 1.4]})
    models = list(dict.fromkeys(s.model for s in sizes))
    colors = dict(zip(models, ("tab:blue", "tab:orange", "tab:green")))
    for model in models:
        rows = [s for s in sizes if s.model == model]
        for targets, style in zip(TARGETS, ("o-", "s--")):
            pts = [s for s in rows if s.targets == targets]
            ax1.plot([s.rank for s in pts], [s.adapter_bytes for s in pts], style, color=colors[model],
                     label=f"{model} adapter, {targets}")
        ax1.axhline(rows[0].full_bytes, color=colors[model], linestyle=":", label=f"{model} full model")
    ax1.set(xscale="log", yscale="log", xlabel="LoRA rank r", ylabel="bytes on disk",
            title="Adapter file against the full model")
    ax1.set_xticks(RANKS, [str(r) for r in RANKS])
    ax1.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax1.legend(fontsize=8)
    labels = [f"{m.model}: {m.operation}" for m in measures]
    ax2.barh(range(len(measures)), [m.median_ms for m in measures],
             color=[colors.get(m.model, "gray") for m in measures])
    ax2.set_yticks(range(len(measures)), labels, fontsize=7)
    ax2.invert_yaxis()
    ax2.set(xscale="log", xlabel="median time (ms, log scale)", title="Save, load and switch times")
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def run_bench(models=MODELS, repeats: int = 5, out: Path = OUT, cache: Path | None = None) -> Path:
    """Benchmark ``models``; write ``out/results.md``, ``.json`` and ``.png``; return the markdown path."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1 (got {repeats}).")
    quiet_libraries()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sizes, measures = [], []
    start = time.perf_counter()
    for name in models:
        folder = model_dir(name, cache)
        with tempfile.TemporaryDirectory(prefix="peft-bench-") as work:
            s, m = bench_model(name, folder, Path(work), repeats)
        sizes += s
        measures += m
    md = out / "results.md"
    write_markdown(sizes, measures, repeats, md)
    # The lessons read the package's copy (an installed course shows the same rows): the default run writes the
    # JSON there only; another --out folder gets its own results.json.
    json_path = RESULTS if out == OUT else out / "results.json"
    write_json(sizes, measures, repeats, json_path)
    write_plot(sizes, measures, out / "results.png")
    print(md.read_text())
    print(f"bench: wrote {md}, {json_path} and results.png in {time.perf_counter() - start:.0f} s")
    return md


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median; default 5)")
    parser.add_argument("--out", default=str(OUT), help="folder for results.md and results.png")
    parser.add_argument("--cache", help="cache folder for the random GPT-2 (default ~/.cache/peft-course)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        run_bench(args.models, args.repeats, Path(args.out), Path(args.cache) if args.cache else None)
    except (ValueError, OSError) as exc:
        print(f"bench: {type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
