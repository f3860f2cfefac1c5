"""Rebuild the shipped models, tokenizer and adapters: ``python -m course_utils build-assets``.

A tiny causal LM with GPT-2's architecture and module names (``c_attn``, ``c_proj``, ``c_fc``) and its
own byte-level BPE tokenizer, pretrained on ``tasks.pretraining_corpus()``; then two LoRA adapters,
``spanish_sentiment`` and ``english_ner``, trained on ``tasks.task_splits``. Last, a second base of the
same size and tokenizer with Llama's architecture (``nn.Linear`` layers named ``q_proj``, ``v_proj``...,
an untied ``lm_head``), pretrained briefly; built after the rest, so it changes none of their bytes.
Seeded: the same machine rebuilds the same files.

``python -m course_utils.maintenance.build_assets --llama-only`` rebuilds only ``tiny-llama``.
"""
from __future__ import annotations

import argparse
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
    LlamaConfig,
    LlamaForCausalLM,
)

from .. import tasks
from ..adapter_format import CONFIG_FILE
from ..assets import ADAPTER_NAMES, ASSETS, SHIPPED_BASE_ID, SHIPPED_LLAMA, SHIPPED_LORA, SHIPPED_MODEL
from ..folders import staged_folder
from ..generation import task_accuracy
from ..lesson_setup import quiet_libraries
from ..training import collate, encode_examples

MODEL_CONFIG = dict(n_layer=4, n_head=4, n_embd=128, n_positions=128, vocab_size=1024,
                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
# The Llama base: the GPT-2 base's depth, width, heads, context and vocabulary. Its gated MLP has three
# matrices, so 344 (Llama's 8/3 x hidden, to a multiple of 8) gives about GPT-2's 2 x 4 x hidden weights.
LLAMA_CONFIG = dict(num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4, hidden_size=128,
                    intermediate_size=344, max_position_embeddings=128, vocab_size=1024,
                    tie_word_embeddings=False, attention_dropout=0.0)
LLAMA_STEPS = 200  # about a minute on one core (loss ~0.5; the GPT-2 base's 1000 steps reach ~0.44)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
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


def _pretrain(model, tok, corpus: list[str], out: Path, steps: int):
    ids = [tok(line)["input_ids"] + [tok.eos_token_id] for line in corpus]
    loss = _train(model, ids, [[1] * len(r) for r in ids], tok.eos_token_id, steps, 3e-3, 32, seed=0)
    model.save_pretrained(out)
    return model, loss


def pretrain_base(tok, corpus: list[str], out: Path, steps: int = 1000):
    torch.manual_seed(0)
    config = GPT2Config(**MODEL_CONFIG, bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    return _pretrain(GPT2LMHeadModel(config), tok, corpus, out, steps)


def pretrain_llama(tokenizer_dir: Path, corpus: list[str], out: Path, steps: int = LLAMA_STEPS):
    """The Llama base, with the GPT-2 base's tokenizer files copied byte for byte from ``tokenizer_dir``."""
    out.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copyfile(tokenizer_dir / name, out / name)
    tok = AutoTokenizer.from_pretrained(out)
    torch.manual_seed(0)
    config = LlamaConfig(**LLAMA_CONFIG, bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    return _pretrain(LlamaForCausalLM(config), tok, corpus, out, steps)


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


def build_assets(dest: Path = ASSETS, pretrain_steps: int = 1000, adapter_steps: dict | None = None,
                 llama_steps: int = LLAMA_STEPS) -> dict:
    """Build everything into ``dest`` (replaced only when the whole build succeeded); return a report.

    ``pretrain_steps``, ``adapter_steps`` (``{task: steps}``) and ``llama_steps`` shorten the build for tests.
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
        _log(f"llama base: pretraining {LLAMA_CONFIG} for {llama_steps} steps")
        _, loss = pretrain_llama(model_dir, corpus, stage / SHIPPED_LLAMA.name, llama_steps)
        report["llama_final_loss"] = round(loss, 3)
        (stage / "build_report.json").write_text(json.dumps(report, indent=2) + "\n")
        with staged_folder(dest, replace=True) as final:
            shutil.copytree(stage, final, dirs_exist_ok=True)
            final.chmod(0o755)
            for f in final.rglob("*"):
                f.chmod(0o755 if f.is_dir() else 0o644)
    report["seconds"] = round(time.perf_counter() - start, 1)
    _log(json.dumps(report, indent=2))
    return report


def build_llama(dest: Path = ASSETS, steps: int = LLAMA_STEPS) -> dict:
    """Rebuild only ``dest/tiny-llama``, with ``dest/tiny-gpt2``'s tokenizer; of the rest of ``dest`` only the
    ``llama_final_loss`` entry of build_report.json changes. Returns ``{"llama_final_loss": ...}``."""
    start = time.perf_counter()
    dest = Path(dest)
    tokenizer_dir = dest / SHIPPED_MODEL.name
    if not (tokenizer_dir / TOKENIZER_FILES[0]).is_file():
        raise FileNotFoundError(f"{tokenizer_dir} holds no tokenizer: build everything first (make assets).")
    _log(f"llama base: pretraining {LLAMA_CONFIG} for {steps} steps")
    with staged_folder(dest / SHIPPED_LLAMA.name, replace=True) as final:
        _, loss = pretrain_llama(tokenizer_dir, tasks.pretraining_corpus(), final, steps)
        final.chmod(0o755)
        for f in final.iterdir():
            f.chmod(0o644)
    report_file = dest / "build_report.json"
    report = json.loads(report_file.read_text()) if report_file.is_file() else {}
    report["llama_final_loss"] = round(loss, 3)
    report_file.write_text(json.dumps(report, indent=2) + "\n")
    _log(f"llama_final_loss {report['llama_final_loss']} in {time.perf_counter() - start:.1f} s")
    return {"llama_final_loss": report["llama_final_loss"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils.maintenance.build_assets",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", default=str(ASSETS), help="the assets folder (default: the package's)")
    parser.add_argument("--llama-only", action="store_true", help="rebuild only tiny-llama")
    args = parser.parse_args(argv)
    quiet_libraries()
    if args.llama_only:
        build_llama(Path(args.dest))
    else:
        build_assets(Path(args.dest))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
