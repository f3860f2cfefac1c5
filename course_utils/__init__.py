"""Helpers for the PEFT adapter course: what the lessons and exercises import.

The learner's API is the names below, each defined in one small module that says which lesson teaches it.
Instructor and maintainer tools live apart: ``course_utils.grading`` (student copies, checks, the grader)
and ``course_utils.maintenance`` (executing notebooks, building assets, the benchmark, the full-size model).

Names are imported on first use (importing torch and peft takes seconds), so ``import course_utils`` is
fast and has no side effects; the ``TYPE_CHECKING`` block below lets editors and readers jump to each
definition in one hop.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .adapter_format import read_safetensors_header
    from .artifacts import lesson1_adapter, lesson1_model
    from .assets import ADAPTER_NAMES, SHIPPED_MODEL, course_model
    from .bench_table import bench_table
    from .diagnosis import Diagnosis, diagnose
    from .expected_errors import describe_error, expect_error
    from .files import list_files, tensor_table
    from .generation import complete, task_accuracy
    from .lesson_setup import setup_notebook
    from .library_messages import library_messages
    from .models import load_base_model, load_tokenizer
    from .placement import assert_single_device, device_name, placement_report
    from .quizzes import Quiz, quiz
    from .roundtrip import LogitCheck, compare_logits, logits_of, sample_batch
    from .safe_ops import load_bin_adapter_weights, merge_to_folder, safe_save
    from .shipped import shipped_adapter
    from .storage import (
        adapter_bytes,
        full_model_bytes,
        lora_parameter_count,
        rank_explorer,
    )
    from .target_modules import linear_module_names
    from .tasks import ner_prompt, sentiment_prompt
    from .training import train_demo_adapter
    from .versions import check_versions, versions_summary
    from .widgets import adapter_playground, playground_reply
    from .your_turn import your_turn

# name -> module that defines it
_EXPORTS = {
    "course_model": "assets",
    "SHIPPED_MODEL": "assets",
    "ADAPTER_NAMES": "assets",
    "shipped_adapter": "shipped",
    "load_base_model": "models",
    "load_tokenizer": "models",
    "complete": "generation",
    "task_accuracy": "generation",
    "setup_notebook": "lesson_setup",
    "versions_summary": "versions",
    "check_versions": "versions",
    "compare_logits": "roundtrip",
    "sample_batch": "roundtrip",
    "logits_of": "roundtrip",
    "LogitCheck": "roundtrip",
    "quiz": "quizzes",
    "Quiz": "quizzes",
    "placement_report": "placement",
    "assert_single_device": "placement",
    "device_name": "placement",
    "adapter_playground": "widgets",
    "playground_reply": "widgets",
    "read_safetensors_header": "adapter_format",
    "list_files": "files",
    "tensor_table": "files",
    "diagnose": "diagnosis",
    "Diagnosis": "diagnosis",
    "linear_module_names": "target_modules",
    "expect_error": "expected_errors",
    "describe_error": "expected_errors",
    "safe_save": "safe_ops",
    "merge_to_folder": "safe_ops",
    "load_bin_adapter_weights": "safe_ops",
    "train_demo_adapter": "training",
    "full_model_bytes": "storage",
    "adapter_bytes": "storage",
    "rank_explorer": "storage",
    "lesson1_adapter": "artifacts",
    "lesson1_model": "artifacts",
    "bench_table": "bench_table",
    "lora_parameter_count": "storage",
    "ner_prompt": "tasks",
    "sentiment_prompt": "tasks",
    "library_messages": "library_messages",
    "your_turn": "your_turn",
}

__all__ = [
    "ADAPTER_NAMES",
    "SHIPPED_MODEL",
    "Diagnosis",
    "LogitCheck",
    "Quiz",
    "adapter_bytes",
    "adapter_playground",
    "assert_single_device",
    "bench_table",
    "check_versions",
    "compare_logits",
    "complete",
    "course_model",
    "describe_error",
    "device_name",
    "diagnose",
    "expect_error",
    "full_model_bytes",
    "lesson1_adapter",
    "lesson1_model",
    "library_messages",
    "linear_module_names",
    "list_files",
    "load_base_model",
    "load_bin_adapter_weights",
    "load_tokenizer",
    "logits_of",
    "lora_parameter_count",
    "merge_to_folder",
    "ner_prompt",
    "placement_report",
    "playground_reply",
    "quiz",
    "rank_explorer",
    "read_safetensors_header",
    "safe_save",
    "sample_batch",
    "sentiment_prompt",
    "setup_notebook",
    "shipped_adapter",
    "task_accuracy",
    "tensor_table",
    "train_demo_adapter",
    "versions_summary",
    "your_turn",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'course_utils' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
