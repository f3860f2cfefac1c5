"""Can a serving engine take this adapter folder? ``python -m course_utils diagnose --for vllm|llama.cpp|tgi FOLDER``.

Taught in lesson 10 (section 4, "Serving engines"). Each engine documents limits that peft does not: vLLM caps the rank
(``--max-lora-rank``) and refuses ``modules_to_save`` and DoRA, TGI loads LoRA only into some module names and
drops the rest, llama.cpp reads a GGUF LoRA, not safetensors. The limits are data, not code: each rule in
``data/engine_limits.json`` names its source (a page or an issue) and the engine version it holds for.

``check_engine`` reads ``adapter_config.json``, the safetensors *header* (no torch, no weights) and, when it can
find it, the base model's ``config.json`` (architecture and dtype). It answers one line per finding: what to
change, or to merge instead. A folder with no finding passes.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .adapter_format import CONFIG_FILE, WEIGHTS_FILE, read_safetensors_header, split_lora_key
from .assets import SHIPPED_BASE_ID, course_model

LIMITS_FILE = Path(__file__).resolve().parent / "data" / "engine_limits.json"
SAFETENSORS_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}


class EngineInputError(ValueError):
    """Bad input to ``check_engine`` or ``export_gguf``; its message is one line that names the fix."""


@dataclass
class Adapter:
    """What the engine rules look at in an adapter folder."""

    folder: Path
    config: dict
    modules: list[str]
    dtypes: set[str]
    architecture: str | None = None
    base_dtype: str | None = None

    @property
    def ranks(self) -> list[int]:
        """``r`` and every per-layer rank of ``rank_pattern``."""
        pattern = self.config.get("rank_pattern") or {}
        return [int(self.config.get("r") or 0), *(int(v) for v in pattern.values())]

    @property
    def leaf_modules(self) -> set[str]:
        """The last name of every module with LoRA weights (``c_attn`` for ``transformer.h.0.attn.c_attn``)."""
        return {m.rsplit(".", 1)[-1] for m in self.modules}


@dataclass
class EngineReport:
    """The result of ``check_engine``: ``findings`` (one line each), the ids of the rules ``checked`` and of those
    ``failed``, and ``notes`` (rules it could not apply)."""

    folder: str
    label: str
    version: str
    findings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def __str__(self) -> str:
        head = f"{self.label} {self.version}"
        if self.ok:
            lines = [f"ok: {self.folder} passes every {head} check ({', '.join(self.checked)})."]
        else:
            lines = [f"{self.folder}: {len(self.findings)} problem(s) for {head}:"]
            lines += [f"- {f}" for f in self.findings]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def load_limits(path: Path = LIMITS_FILE) -> dict:
    """The engines' rules, from ``data/engine_limits.json``."""
    return json.loads(Path(path).read_text(encoding="utf-8"))["engines"]


def engine_rules(engine: str, limits: dict | None = None) -> dict:
    """One engine's entry in the limits file; ``EngineInputError`` for an unknown engine."""
    limits = load_limits() if limits is None else limits
    if engine not in limits:
        raise EngineInputError(f"unknown engine {engine!r}: choose one of {', '.join(limits)}.")
    return limits[engine]


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EngineInputError(f"{path} is not readable JSON ({type(e).__name__}): re-save the {what}.") from None
    if not isinstance(data, dict):
        raise EngineInputError(f"{path} is not a JSON object: re-save the {what}.")
    return data


def base_config(adapter_config: dict, base: str | None = None) -> dict | None:
    """The base model's ``config.json``: from ``base`` (a folder, or ``"course"``), else from the adapter's
    ``base_model_name_or_path`` when that is a local folder or the course's shipped id; ``None`` if not found."""
    name = base or adapter_config.get("base_model_name_or_path") or ""
    if name in ("course", SHIPPED_BASE_ID):
        name = course_model()
    path = Path(name).expanduser() / "config.json" if name else None
    if path is None or not path.is_file():
        if base is not None:
            raise EngineInputError(f"no config.json in {base}: give --base a local model folder, or \"course\".")
        return None
    return _read_json(path, "base model's config")


def read_adapter(folder: str | Path, base: str | None = None) -> Adapter:
    """Read what the rules need from ``folder``; ``EngineInputError`` (one line) if it is not an adapter folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EngineInputError(f"no folder at {folder}: give the adapter folder (the one with {CONFIG_FILE}).")
    if not (folder / CONFIG_FILE).is_file():
        raise EngineInputError(f"no {CONFIG_FILE} in {folder}: give the folder that save_pretrained wrote.")
    config = _read_json(folder / CONFIG_FILE, "adapter with save_pretrained")
    if not (folder / WEIGHTS_FILE).is_file():
        raise EngineInputError(f"no {WEIGHTS_FILE} in {folder}: engines read safetensors; "
                               "re-save with save_pretrained (safe_serialization=True, the default).")
    try:
        header = read_safetensors_header(folder / WEIGHTS_FILE)
    except ValueError as e:
        raise EngineInputError(f"{e} Re-save the adapter with save_pretrained.") from None
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    modules = sorted({parts[0] for k in tensors if (parts := split_lora_key(k))})
    base_cfg = base_config(config, base) or {}
    archs = base_cfg.get("architectures") or [None]
    return Adapter(folder=folder, config=config, modules=modules,
                   dtypes={SAFETENSORS_DTYPES.get(v["dtype"], v["dtype"]) for v in tensors.values()},
                   architecture=archs[0], base_dtype=base_cfg.get("dtype") or base_cfg.get("torch_dtype"))


# One function per kind of rule: (adapter, rule) -> the finding's line, or None when the rule passes.
# A rule that needs the base model's config returns NEEDS_BASE when none was found.
NEEDS_BASE = object()


def _rule_architecture(adapter: Adapter, rule: dict):
    if adapter.architecture is None:
        return NEEDS_BASE
    refused = adapter.architecture in rule.get("unsupported", ())
    if refused or ("supported" in rule and adapter.architecture not in rule["supported"]):
        return rule["message"].format(architecture=adapter.architecture)
    return None


def _rule_rank(adapter: Adapter, rule: dict):
    rank = max(adapter.ranks)
    if rank <= rule["default"]:
        return None
    fitting = [v for v in rule["allowed"] if v >= rank]
    if not fitting:
        return rule["message_too_big"].format(rank=rank, largest=max(rule["allowed"]))
    return rule["message"].format(rank=rank, default=rule["default"], needed=fitting[0])


def _rule_field(adapter: Adapter, rule: dict):
    value = adapter.config.get(rule["field"])
    return rule["message"].format(value=json.dumps(value)) if value else None


def _rule_targets_allowed(adapter: Adapter, rule: dict):
    outside = sorted(adapter.leaf_modules - set(rule["modules"]))
    if not outside:
        return None
    return rule["message"].format(modules=", ".join(outside), allowed=", ".join(rule["modules"]))


def _rule_targets_need_support(adapter: Adapter, rule: dict):
    inside = sorted(adapter.leaf_modules & set(rule["modules"]))
    return rule["message"].format(modules=", ".join(inside)) if inside else None


def _rule_dtype(adapter: Adapter, rule: dict):
    if "bfloat16" not in adapter.dtypes:
        return None
    if adapter.base_dtype is None:
        return NEEDS_BASE
    if adapter.base_dtype == "bfloat16":
        return None
    return rule["message"].format(base_dtype=adapter.base_dtype)


def _rule_gguf_file(adapter: Adapter, rule: dict):
    if any(adapter.folder.glob("*.gguf")):
        return None
    return rule["message"].format(folder=adapter.folder)


RULE_KINDS = {
    "architecture": _rule_architecture,
    "rank": _rule_rank,
    "field": _rule_field,
    "targets_allowed": _rule_targets_allowed,
    "targets_need_support": _rule_targets_need_support,
    "dtype": _rule_dtype,
    "gguf_file": _rule_gguf_file,
}


def apply_rules(adapter: Adapter, entry: dict, report: EngineReport, skip: tuple[str, ...] = ()) -> EngineReport:
    """Apply an engine's rules (all but the ids in ``skip``) to ``adapter``, adding to ``report``."""
    for rule in entry["rules"]:
        if rule["id"] in skip:
            continue
        result = RULE_KINDS[rule["kind"]](adapter, rule)
        if result is NEEDS_BASE:
            report.notes.append(f"rule {rule['id']!r} skipped: the base model's config.json was not found "
                                "(pass --base MODEL_FOLDER, or --base course).")
            continue
        report.checked.append(rule["id"])
        if result:
            report.failed.append(rule["id"])
            report.findings.append(f"{result} (source: {rule['source']}; holds for {entry['label']} {rule['version']})")
    return report


def check_engine(folder: str | Path, engine: str, base: str | None = None, limits: dict | None = None) -> EngineReport:
    """Check an adapter folder against one engine's documented limits (``vllm``, ``llama.cpp`` or ``tgi``)."""
    entry = engine_rules(engine, limits)
    adapter = read_adapter(folder, base)
    report = EngineReport(folder=str(folder), label=entry["label"], version=entry["version"])
    return apply_rules(adapter, entry, report)


def run_engine_check(folder: str, engine: str, base: str | None = None) -> int:
    """The CLI's ``diagnose --for ENGINE``: print the report; 0 passes, 1 findings, 2 bad input."""
    try:
        report = check_engine(folder, engine, base=base)
    except EngineInputError as e:
        print(f"diagnose --for {engine}: {e}", file=sys.stderr)
        return 2
    print(report)
    return 0 if report.ok else 1
