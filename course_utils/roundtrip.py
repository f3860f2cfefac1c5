"""Proof that a reload worked: compare the logits of the model you saved with the reloaded one.

Defined in lesson 2: ``logits_of`` and ``compare_logits`` are shown there as cells, and
``tests/test_roundtrip.py`` checks that the lesson's copy equals this one. The doctor, the exercises'
checks and the later lessons import them from here.
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
    """A fixed batch of token ids to feed both models, right-padded. The tokenizer is not changed.

    Padding uses the tokenizer's pad token, or its end-of-text token when it has none (GPT-2's case);
    the attention mask marks the padding, which ``compare_logits`` leaves out.
    """
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = [tokenizer(text)["input_ids"] for text in texts]
    width = max(len(row) for row in rows)
    return {"input_ids": torch.tensor([row + [pad_id] * (width - len(row)) for row in rows]),
            "attention_mask": torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])}


@torch.no_grad()
def logits_of(model, batch: dict) -> torch.Tensor:
    """The model's logits on ``batch``, in eval mode (no dropout), as float32 on the CPU."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
    finally:
        model.train(was_training)  # leave the model as we found it
    return logits.float().cpu()


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


def compare_logits(reference, candidate, tokenizer, atol=1e-5, batch=None):
    """Run both models on the same inputs and report the largest logit difference."""
    batch = batch if batch is not None else sample_batch(tokenizer)
    a, b = logits_of(reference, batch), logits_of(candidate, batch)
    if a.shape != b.shape:
        raise ValueError(f"The models disagree on the output shape ({tuple(a.shape)} vs {tuple(b.shape)}): "
                         "they were not built on the same base model.")
    real_tokens = batch["attention_mask"].bool()  # padding positions are not compared
    return LogitCheck(float((a - b).abs()[real_tokens].max()), atol)
