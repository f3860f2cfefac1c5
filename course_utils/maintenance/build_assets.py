"""Rebuild the shipped model, tokenizer and adapters: ``python -m course_utils build-assets``.

A tiny causal LM with GPT-2's architecture and module names (``c_attn``, ``c_proj``, ``c_fc``) and its
own byte-level BPE tokenizer, pretrained on ``tasks.pretraining_corpus()``; then two LoRA adapters,
``spanish_sentiment`` and ``english_ner``, trained on ``tasks.task_splits``. Seeded: the same
machine rebuilds the same files.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from tokenizers import ByteLevelBPETokenizer
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    GPT2TokenizerFast,
)

from .. import tasks
from ..adapter_format import CONFIG_FILE
from ..assets import ADAPTER_NAMES, ASSETS, SHIPPED_BASE_ID, SHIPPED_LORA
from ..folders import staged_folder
from ..generation import task_accuracy
from ..training import collate, encode_examples

MODEL_CONFIG = dict(n_layer=4, n_head=4, n_embd=128, n_positions=128, vocab_size=1024,
                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
SPLITS = dict(n_train=3000, n_test=200)


def _log(msg: str) -> None:
    print(msg, flush=True)


def build_tokenizer(corpus: list[str], out: Path):
    bpe = ByteLevelBPETokenizer()
    task_text = [e.prompt + e.answer for t in ADAPTER_NAMES for e in tasks.task_splits(t, **SPLITS)[0]]
    bpe.train_from_iterator(corpus + task_text, vocab_size=MODEL_CONFIG["vocab_size"], min_frequency=2,
                            special_tokens=[tasks.EOS], show_progress=False)
    tok = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=tasks.EOS, eos_token=tasks.EOS,
                            unk_token=tasks.EOS, pad_token=tasks.EOS,
                            model_max_length=MODEL_CONFIG["n_positions"])
    tok.save_pretrained(out)
    return tok


def _batches(ids: list[list[int]], mask: list[list[int]], batch_size: int, pad: int, g: torch.Generator):
    order = torch.randperm(len(ids), generator=g).tolist()
    for i in range(0, len(order) - batch_size + 1, batch_size):
        chunk = order[i:i + batch_size]
        batch = collate([(ids[j], mask[j]) for j in chunk], pad)
        yield batch["input_ids"], batch["attention_mask"], batch["labels"]


def _train(model, ids, mask, pad, steps: int, lr: float, batch_size: int, seed: int) -> float:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(seed)
    model.train()
    step, loss = 0, torch.tensor(0.0)
    while step < steps:
        for x, att, labels in _batches(ids, mask, batch_size, pad, g):
            loss = model(input_ids=x, attention_mask=att, labels=labels).loss
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            if step % 200 == 0:
                _log(f"  step {step}/{steps}  loss {loss.item():.3f}")
            if step == steps:
                break
    model.eval()
    return loss.item()


def pretrain_base(tok, corpus: list[str], out: Path, steps: int = 1000):
    torch.manual_seed(0)
    config = GPT2Config(**MODEL_CONFIG, bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    model = GPT2LMHeadModel(config)
    ids = [tok(line)["input_ids"] + [tok.eos_token_id] for line in corpus]
    loss = _train(model, ids, [[1] * len(r) for r in ids], tok.eos_token_id, steps, 3e-3, 32, seed=0)
    model.save_pretrained(out)
    return model, loss


def train_adapter(base, tok, task: str, out: Path, steps: int = 600, lr: float = 5e-3):
    torch.manual_seed(1)
    train, _ = tasks.task_splits(task, **SPLITS)
    rows = encode_examples(tok, train)
    ids, mask = [r[0] for r in rows], [r[1] for r in rows]
    model = get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", **SHIPPED_LORA), adapter_name=task)
    loss = _train(model, ids, mask, tok.eos_token_id, steps, lr, 32, seed=1)
    model.save_pretrained(out, selected_adapters=[task])
    # With a non-default name peft writes into out/<task>; keep each shipped adapter at its folder's root.
    nested = out / task
    if nested.is_dir():
        for f in nested.iterdir():
            shutil.move(str(f), out / f.name)
        nested.rmdir()
    config_file = out / CONFIG_FILE
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = SHIPPED_BASE_ID
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return model.unload(), loss


ADAPTER_STEPS = {"spanish_sentiment": 400, "english_ner": 1400}


def build_assets(dest: Path = ASSETS, pretrain_steps: int = 1000, adapter_steps: dict | None = None) -> dict:
    """Build everything into ``dest`` (replaced only when the whole build succeeded); return a report.

    ``pretrain_steps`` and ``adapter_steps`` (``{task: steps}``) shorten the build for tests.
    """
    adapter_steps = {**ADAPTER_STEPS, **(adapter_steps or {})}
    start = time.perf_counter()
    report: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / "assets"
        model_dir = stage / "tiny-gpt2"
        corpus = tasks.pretraining_corpus()
        _log(f"tokenizer: training byte-level BPE on {len(corpus)} lines")
        tok = build_tokenizer(corpus, model_dir)
        _log(f"base model: pretraining {MODEL_CONFIG} for {pretrain_steps} steps")
        base, loss = pretrain_base(tok, corpus, model_dir, pretrain_steps)
        report["base_final_loss"] = round(loss, 3)
        for task in ADAPTER_NAMES:
            _log(f"adapter {task}: {adapter_steps[task]} steps")
            base, loss = train_adapter(base, tok, task, stage / "adapters" / task, adapter_steps[task])
            report[f"{task}_final_loss"] = round(loss, 3)
        # Score the shipped files exactly as a learner loads them.
        tok = AutoTokenizer.from_pretrained(model_dir)
        for task in ADAPTER_NAMES:
            fresh = AutoModelForCausalLM.from_pretrained(model_dir).eval()
            model = PeftModel.from_pretrained(fresh, stage / "adapters" / task)
            report[f"{task}_heldout_accuracy"] = task_accuracy(model, tok, tasks.task_splits(task, **SPLITS)[1])
        (stage / "build_report.json").write_text(json.dumps(report, indent=2) + "\n")
        with staged_folder(dest, replace=True) as final:
            shutil.copytree(stage, final, dirs_exist_ok=True)
            final.chmod(0o755)
            for f in final.rglob("*"):
                f.chmod(0o755 if f.is_dir() else 0o644)
    report["seconds"] = round(time.perf_counter() - start, 1)
    _log(json.dumps(report, indent=2))
    return report
