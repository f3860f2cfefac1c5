"""One call at the top of every lesson: seeds, deterministic kernels, no download progress bars.

Defined in lesson 1 (``setup_notebook``); every notebook starts with it. It leaves the libraries' warnings
and log messages alone, except the three harmless ones lesson 1 shows and explains (``EXPLAINED_IN_LESSON_1``):
the pinned stack prints them on almost every model load or training step, so after lesson 1 they would only
bury the messages a lesson is about. Lesson 1 calls ``setup_notebook(show_explained=True)`` to show them.
"""
from __future__ import annotations

import logging
import os
import random
import warnings

import huggingface_hub.utils as hub_utils
import numpy as np
import torch
import transformers

# Messages the pinned stack prints that the command-line tools (doctor, grader, bench) do not need to show.
# Lessons do not use this list: they show these messages where they arise.
NOISY_WARNINGS = (
    r".*fan_in_fan_out is set to False.*",
    r".*is_gradient_checkpointing.*is deprecated.*",
    r".*`loss_type=None` was set in the config.*",
    r".*Could not find a config file in.*",
    r".*copying from a non-meta parameter in the checkpoint to a meta parameter.*",
    r".*Already found a `peft_config` attribute in the model.*",
)


# Harmless on the pinned stack, printed by nearly every cell that builds or trains a LoRA model on GPT-2, and
# explained in lesson 1 section 3: peft switches fan_in_fan_out on for GPT-2's Conv1D layers (the saved config
# shows it); peft 0.21 reads transformers' deprecated ``is_gradient_checkpointing``; GPT2LMHeadModel's class
# name maps to no loss type in transformers 5.23, which then uses the causal-LM loss the course wants.
EXPLAINED_IN_LESSON_1 = (
    (UserWarning, r"fan_in_fan_out is set to False but the target module is `Conv1D`"),
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated"),
)
EXPLAINED_LOG_IN_LESSON_1 = "`loss_type=None` was set in the config but it is unrecognized"
# peft imports bitsandbytes whenever it is installed. Only on a CPU with AVX512-BF16, bitsandbytes then logs, once, that
# it could not fetch an optional faster CPU kernel (the `kernels` package is not installed) and uses its own CPU code.
# A line that depends on the learner's CPU cannot be in a stored output, so setup_notebook always drops it (only it);
# lesson 11 explains it in prose.
BITSANDBYTES_KERNEL_LOG = ("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward")


class _DropMessage(logging.Filter):
    """Drops log records containing ``text`` (one explained message), lets every other one through."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def hide_explained_messages() -> None:
    """Hide exactly the messages of ``EXPLAINED_IN_LESSON_1``: nothing else is filtered."""
    for category, pattern in EXPLAINED_IN_LESSON_1:
        warnings.filterwarnings("ignore", message=pattern, category=category)
    logger = logging.getLogger("transformers.modeling_utils")
    if not any(isinstance(f, _DropMessage) for f in logger.filters):
        logger.addFilter(_DropMessage(EXPLAINED_LOG_IN_LESSON_1))


def hide_machine_dependent_messages() -> None:
    """Drop bitsandbytes' "Failed to load CPU gemm_4bit_forward" log line, which only CPUs with AVX512-BF16 print
    (see ``BITSANDBYTES_KERNEL_LOG``); setup_notebook calls it before anything imports peft."""
    bnb_logger = logging.getLogger(BITSANDBYTES_KERNEL_LOG[0])
    if not any(isinstance(f, _DropMessage) for f in bnb_logger.filters):
        bnb_logger.addFilter(_DropMessage(BITSANDBYTES_KERNEL_LOG[1]))


def quiet_libraries() -> None:
    """For the command-line tools only (doctor, grader, bench, tests): progress bars off, library logs at
    error level, and the known-noisy warnings filtered. ``setup_notebook`` does not call it."""
    quiet_progress_bars()
    transformers.logging.set_verbosity_error()
    for name in ("transformers", "peft", "accelerate", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for pattern in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def quiet_progress_bars() -> None:
    """Turn off transformers' and huggingface_hub's progress bars (their rates and timings differ on every run)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    transformers.utils.logging.disable_progress_bar()
    hub_utils.disable_progress_bars()


def short_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as one line, ``Category: message  [package/module.py:line]``: the path is cut at
    ``site-packages/``, so stored outputs do not depend on where the course is installed."""
    where = str(filename).replace("\\", "/").split("site-packages/")[-1]
    return f"{category.__name__}: {message}  [{where}:{lineno}]\n"


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch, and ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def setup_notebook(seed: int = 0, show_explained: bool = False) -> None:
    """Seeds everything, turns off progress bars and prints warnings on one line without the install path,
    so a lesson's stored outputs are stable under nbval. The three messages lesson 1 explains are hidden
    unless ``show_explained`` (lesson 1 shows them), and bitsandbytes' CPU-dependent kernel line is dropped
    (``hide_machine_dependent_messages``); no other warning or log message is filtered."""
    quiet_progress_bars()
    warnings.formatwarning = short_warning
    hide_machine_dependent_messages()
    if not show_explained:
        hide_explained_messages()
    seed_everything(seed)
