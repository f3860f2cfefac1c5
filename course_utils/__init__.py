"""Helpers for the PEFT adapter course: the shipped model, checks and tools the lessons teach.

Names are imported lazily, so ``import course_utils`` stays fast and has no side effects.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "course_model": "paths", "shipped_adapter": "paths", "SHIPPED_MODEL": "paths", "ADAPTER_NAMES": "paths",
    "load_base_model": "models", "load_tokenizer": "models",
    "complete": "generation", "task_accuracy": "generation",
    "setup_notebook": "notebook",
    "versions_summary": "versions", "check_versions": "versions",
    "compare_logits": "roundtrip", "sample_batch": "roundtrip",
    "quiz": "quiz", "Quiz": "quiz",
    "device_name": "doctor",
    "placement_report": "placement", "assert_single_device": "placement",
    "adapter_playground": "widgets", "playground_reply": "widgets",
    "list_files": "files", "read_safetensors_header": "files", "tensor_table": "files",
    "diagnose": "diagnosis", "Diagnosis": "diagnosis",
    "linear_module_names": "modules", "expect_error": "errors", "describe_error": "errors",
    "safe_save": "safe_ops", "merge_to_folder": "safe_ops", "load_bin_adapter_weights": "safe_ops",
    "train_demo_adapter": "training",
    "full_model_bytes": "storage", "adapter_bytes": "storage", "rank_explorer": "storage",
    "lesson1_adapter": "artifacts", "lesson1_model": "artifacts",
    "bench_table": "bench_results",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        # Importing submodule ``quiz`` sets the package attribute ``quiz`` to the module; put the function back.
        globals()[name] = value
        return value
    raise AttributeError(f"module 'course_utils' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
