"""A short, seeded LoRA training run, so a saved adapter holds trained (not initial) weights.

Defined in lesson 1 (``train_demo_adapter``); lesson 2 repeats lesson 1's run through ``artifacts``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm import auto as tqdm_auto

from . import tasks


@dataclass(frozen=True)
class TrainResult:
    """What ``train_demo_adapter`` did: the loss of its first and last batch, and how many steps it took."""

    first_loss: float
    final_loss: float
    steps: int

    def __str__(self) -> str:
        return f"{self.steps} steps: loss {self.first_loss:.3f} -> {self.final_loss:.3f}"


def encode_examples(tokenizer, examples) -> list[tuple[list[int], list[int]]]:
    """``(token ids, loss mask)`` per example: the loss is taken on the answer and the end token only."""
    rows = []
    for e in examples:
        prompt = tokenizer(e.prompt)["input_ids"]
        answer = tokenizer(e.answer)["input_ids"] + [tokenizer.eos_token_id]
        rows.append((prompt + answer, [0] * len(prompt) + [1] * len(answer)))
    return rows


def collate(rows, pad_id: int) -> dict:
    """Right-pad ``rows`` from ``encode_examples`` into a batch with ``labels`` (-100 where no loss)."""
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100)
    for k, (ids, mask) in enumerate(rows):
        input_ids[k, :len(ids)] = torch.tensor(ids)
        attention_mask[k, :len(ids)] = 1
        labels[k, :len(ids)] = torch.tensor([t if keep else -100 for t, keep in zip(ids, mask)])
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def demo_batches(tokenizer, steps: int, seed: int = 0, batch_size: int = 16, task: str = "spanish_sentiment",
                 device="cpu"):
    """``steps`` seeded batches of ``task`` (from ``collate``), reshuffling the examples when they run out.

    An iterator: the same arguments give the same batches in the same order. Defined in lesson 1.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be at least 1 (got steps={steps}, batch_size={batch_size}).")
    if tokenizer.pad_token_id is None:
        raise ValueError("The tokenizer has no pad token: load it with course_utils.load_tokenizer().")
    train, _ = tasks.task_splits(task, n_train=min(steps * batch_size, 2000), n_test=0, seed=seed)
    rows = encode_examples(tokenizer, train)
    generator = torch.Generator().manual_seed(seed)

    def batches():
        order: list[int] = []
        for _ in range(steps):
            if len(order) < batch_size:
                order += torch.randperm(len(rows), generator=generator).tolist()
            chunk, order = order[:batch_size], order[batch_size:]
            yield {k: v.to(device) for k, v in collate([rows[i] for i in chunk], tokenizer.pad_token_id).items()}

    return batches()


def train_loop(model, batches, lr=5e-3):
    """Train the parameters that require grad on each batch, with AdamW; return each batch's loss. Shown in lesson 1."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for batch in batches:
        loss = model(**batch).loss  # cross-entropy on the answer tokens
        loss.backward()             # gradients reach the trainable (LoRA) weights only
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    model.eval()
    return losses


def train_demo_adapter(model, tokenizer, steps: int = 10, seed: int = 0, lr: float = 5e-3, batch_size: int = 16,
                       task: str = "spanish_sentiment", progress: bool = True,
                       threads: int | None = 1) -> TrainResult:
    """Train ``model``'s trainable parameters (its LoRA weights) for ``steps`` batches of ``task``, in place.

    It runs ``train_loop`` on ``demo_batches``, the loop lesson 1 shows. Seeded: the same model, seed and
    arguments give the same weights on the same machine. ``progress`` shows a tqdm bar. The model is left in
    eval mode. ``threads`` torch threads are used while training (restored afterwards): for matrices this
    small one thread is faster than several, and it does not stall when other processes share the CPU.
    ``None`` keeps torch's setting. Defined in lesson 1.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("The model has no trainable parameters: wrap it with peft's get_peft_model(model, config) "
                         "first (or load the adapter with is_trainable=True).")
    batches = demo_batches(tokenizer, steps, seed=seed, batch_size=batch_size, task=task, device=params[0].device)
    bar = None
    if progress:
        # No rate or elapsed time in the bar: a stored notebook output must not change from run to run.
        bar = tqdm_auto.tqdm(batches, total=steps, desc=f"training on {task}",
                             bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt}")
        batches = bar
    saved_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        losses = train_loop(model, batches, lr=lr)
    finally:
        torch.set_num_threads(saved_threads)
        model.eval()
        if bar is not None:
            bar.close()
    return TrainResult(losses[0], losses[-1], steps)
