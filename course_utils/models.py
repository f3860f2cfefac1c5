"""Loading the course's base model and tokenizer through the real ``from_pretrained`` code paths.

Defined in lesson 1; used by every lesson.
"""
from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from .assets import course_model


def load_tokenizer(name: str | None = None, arch: str | None = None):
    """The tokenizer of the course model (``course_model(arch)`` unless ``name`` is given)."""
    tok = AutoTokenizer.from_pretrained(name or course_model(arch))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_base_model(name: str | None = None, dtype: torch.dtype = torch.float32, arch: str | None = None, **kwargs):
    """A fresh copy of the course's base model, in eval mode, via ``AutoModelForCausalLM.from_pretrained``.

    ``arch="llama"`` loads the shipped Llama-architecture base instead (see ``course_model``).
    """
    model = AutoModelForCausalLM.from_pretrained(name or course_model(arch), dtype=dtype, **kwargs)
    return model.eval()
