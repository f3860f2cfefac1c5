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
    "list_files": "files", "read_safetensors_header": "files", "tensor_table": "files",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'course_utils' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
