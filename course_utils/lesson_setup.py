"""One call at the top of every lesson: seeds, quiet libraries, deterministic output.

Defined in lesson 1 (``setup_notebook``); every notebook starts with it.
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

# Messages the pinned stack prints that teach nothing and would make stored outputs noisy.
NOISY_WARNINGS = (
    r".*fan_in_fan_out is set to False.*",
    r".*is_gradient_checkpointing.*is deprecated.*",
    r".*`loss_type=None` was set in the config.*",
    r".*Could not find a config file in.*",
    r".*copying from a non-meta parameter in the checkpoint to a meta parameter.*",
    r".*Already found a `peft_config` attribute in the model.*",
)


def quiet_libraries() -> None:
    """Turn off transformers', peft's and huggingface_hub's progress bars and known-noisy warnings."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    hub_utils.disable_progress_bars()
    for name in ("transformers", "peft", "accelerate", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for pattern in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch, and ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def setup_notebook(seed: int = 0) -> None:
    """Seeds everything and quiets the libraries, so a lesson's stored outputs are stable under nbval."""
    quiet_libraries()
    seed_everything(seed)
