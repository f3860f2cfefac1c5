"""Proof that a reload worked: compare the logits of the model you saved with the reloaded one.

Defined in lesson 2 (``compare_logits``); the doctor, the exercises' checks and lesson 3 use it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

SAMPLE_TEXTS = (
    "Reseña: La comida fue excelente.\nSentimiento:",
    "Sentence: Maria works for Acme in Paris.\nEntities:",
    "The morning was cold and the streets were quiet.",
)


def sample_batch(tokenizer, texts=SAMPLE_TEXTS) -> dict:
    """A fixed, padded batch of token ids to feed both models."""
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return dict(tokenizer(list(texts), return_tensors="pt", padding=True))


@torch.no_grad()
def logits_of(model, batch: dict) -> torch.Tensor:
    """The model's logits on ``batch`` (moved to the model's device), as float32 on the CPU."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        out = model(**{k: v.to(device) for k, v in batch.items()}).logits
    finally:
        model.train(was_training)
    return out.float().cpu()


@dataclass(frozen=True)
class LogitCheck:
    """Outcome of ``compare_logits``: ``ok`` when the largest difference is within ``atol``."""

    max_abs_diff: float
    atol: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.atol

    def __str__(self) -> str:
        verdict = "same logits" if self.ok else "DIFFERENT logits"
        return f"{verdict}: max |difference| = {self.max_abs_diff:.2e} (tolerance {self.atol:.0e})"


def compare_logits(reference, candidate, tokenizer, atol: float = 1e-5, batch: dict | None = None) -> LogitCheck:
    """Compare two models' logits on the same inputs; ``reference`` is usually the model you saved."""
    batch = batch if batch is not None else sample_batch(tokenizer)
    a, b = logits_of(reference, batch), logits_of(candidate, batch)
    if a.shape != b.shape:
        raise ValueError(f"The models disagree on the output shape ({tuple(a.shape)} vs {tuple(b.shape)}): "
                         "they were not built on the same base model.")
    mask = batch["attention_mask"].bool()
    return LogitCheck(float((a - b).abs()[mask].max()), atol)
