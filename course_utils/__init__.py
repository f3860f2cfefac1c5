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
    from .hub_cache import add_commit, record_revisions
    from .lesson_setup import setup_notebook
    from .library_messages import library_messages
    from .models import load_base_model, load_tokenizer
    from .placement import assert_single_device, device_name, placement_report
    from .quizzes import Quiz, quiz
    from .roundtrip import LogitCheck, compare_logits, logits_of, sample_batch
    from .safe_ops import load_bin_adapter_weights, merge_to_folder, safe_save, set_base_model
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
    from .zero3_sim import gathered_state_dict, simulate_zero3

# The learner's API, name -> the module that defines it: the one list of public names. ``__all__`` is made from
# it, and tests/test_init.py checks that the TYPE_CHECKING block above imports exactly these names.
_EXPORTS = {
    "read_safetensors_header": "adapter_format",
    "lesson1_adapter": "artifacts",
    "lesson1_model": "artifacts",
    "ADAPTER_NAMES": "assets",
    "course_model": "assets",
    "SHIPPED_MODEL": "assets",
    "bench_table": "bench_table",
    "diagnose": "diagnosis",
    "Diagnosis": "diagnosis",
    "describe_error": "expected_errors",
    "expect_error": "expected_errors",
    "list_files": "files",
    "tensor_table": "files",
    "complete": "generation",
    "task_accuracy": "generation",
    "add_commit": "hub_cache",
    "record_revisions": "hub_cache",
    "setup_notebook": "lesson_setup",
    "library_messages": "library_messages",
    "load_base_model": "models",
    "load_tokenizer": "models",
    "assert_single_device": "placement",
    "device_name": "placement",
    "placement_report": "placement",
    "quiz": "quizzes",
    "Quiz": "quizzes",
    "compare_logits": "roundtrip",
    "LogitCheck": "roundtrip",
    "logits_of": "roundtrip",
    "sample_batch": "roundtrip",
    "load_bin_adapter_weights": "safe_ops",
    "merge_to_folder": "safe_ops",
    "safe_save": "safe_ops",
    "set_base_model": "safe_ops",
    "shipped_adapter": "shipped",
    "adapter_bytes": "storage",
    "full_model_bytes": "storage",
    "lora_parameter_count": "storage",
    "rank_explorer": "storage",
    "linear_module_names": "target_modules",
    "ner_prompt": "tasks",
    "sentiment_prompt": "tasks",
    "train_demo_adapter": "training",
    "check_versions": "versions",
    "versions_summary": "versions",
    "adapter_playground": "widgets",
    "playground_reply": "widgets",
    "your_turn": "your_turn",
    "gathered_state_dict": "zero3_sim",
    "simulate_zero3": "zero3_sim",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'course_utils' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
