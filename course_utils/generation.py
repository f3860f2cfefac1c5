"""Greedy text generation and task scoring used across the lessons.

Lesson 5 shows the real ``generate(..., adapter_names=...)`` call with its left padding; ``complete`` wraps
that call for the lessons, the asset build and the tests. It never changes the tokenizer it is given.
"""
from __future__ import annotations

import torch


@torch.no_grad()
def complete(model, tokenizer, prompts, max_new_tokens: int = 24, adapter_names=None) -> list[str]:
    """Greedy continuations of ``prompts`` (a string or a list), cut at the first newline.

    ``adapter_names`` (one per prompt) is passed to peft's mixed-batch ``generate``.
    """
    single = isinstance(prompts, str)
    prompts = [prompts] if single else list(prompts)
    if tokenizer.pad_token is None and len(prompts) > 1:
        raise ValueError("The tokenizer has no pad token, so prompts cannot be batched: "
                         "set tokenizer.pad_token = tokenizer.eos_token (load_tokenizer() does).")
    # A decoder-only model continues from the last position, so the padding goes on the left; passed per
    # call, it leaves the learner's tokenizer as it was.
    batch = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left").to(model.device)
    extra = {"adapter_names": list(adapter_names)} if adapter_names is not None else {}
    out = model.generate(
        **batch, max_new_tokens=max_new_tokens, do_sample=False,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **extra,
    )
    texts = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    texts = [t.split("\n")[0] for t in texts]
    return texts[0] if single else texts


def task_accuracy(model, tokenizer, examples, batch_size: int = 64) -> float:
    """Exact-match accuracy of ``model`` on ``examples`` (``tasks.Example`` objects)."""
    if not examples:
        raise ValueError("task_accuracy needs at least one example.")
    right = 0
    for i in range(0, len(examples), batch_size):
        chunk = examples[i:i + batch_size]
        outs = complete(model, tokenizer, [e.prompt for e in chunk])
        right += sum(o.strip() == e.answer.strip() for o, e in zip(outs, chunk))
    return right / len(examples)
