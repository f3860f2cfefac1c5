"""course_utils.maintenance.full_size: the full-size GPT-2 folder, built locally (a small config stands in)."""
from pathlib import Path

import torch

from course_utils.assets import SHIPPED_MODEL
from course_utils.maintenance import full_size


def _small_model_folder(folder: Path) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=64, n_positions=128, vocab_size=1024)).save_pretrained(folder)
    return folder


def test_full_size_folder_adds_the_course_tokenizer(tmp_path, monkeypatch):
    from course_utils import load_tokenizer

    built = []

    def small_weights(cache):
        built.append(cache)
        return _small_model_folder(cache / "gpt2-random")

    monkeypatch.setattr(full_size, "gpt2_random", small_weights)
    folder = full_size.full_size_gpt2_folder(tmp_path)
    assert folder == tmp_path / full_size.FULL_SIZE_NAME
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    tok = load_tokenizer(str(folder))
    assert tok("Hola")["input_ids"] == load_tokenizer(str(SHIPPED_MODEL))("Hola")["input_ids"]
    assert full_size.full_size_gpt2_folder(tmp_path) == folder
    assert len(built) == 1  # reused, not rebuilt
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind
