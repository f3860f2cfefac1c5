"""course_utils.full_size: the full-size folder builder and adapters trained for a non-shipped COURSE_MODEL.

Fast: a small non-default GPT-2 config (2 layers, n_embd 64) stands in for the 124M model.
"""
import json
from pathlib import Path

import pytest
import torch

from course_utils import full_size, paths


def _small_model_folder(folder: Path) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=64, n_positions=128, vocab_size=1024)).save_pretrained(folder)
    return folder


@pytest.fixture()
def small_model(tmp_path, monkeypatch):
    """A non-shipped model folder (course tokenizer included), a fresh cache, and a fresh announcement state."""
    from course_utils import load_tokenizer

    folder = _small_model_folder(tmp_path / "small-gpt2")
    load_tokenizer(str(paths.SHIPPED_MODEL)).save_pretrained(folder)
    monkeypatch.setenv("PEFT_COURSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(full_size, "_announced", set())
    return folder


def test_is_shipped_model(tmp_path):
    assert full_size.is_shipped_model(str(paths.SHIPPED_MODEL))
    assert full_size.is_shipped_model(str(paths.SHIPPED_MODEL / ".." / "tiny-gpt2"))
    assert not full_size.is_shipped_model(str(tmp_path))
    assert not full_size.is_shipped_model("gpt2")


def test_model_key_follows_the_folder(small_model):
    key = full_size._model_key(str(small_model))
    assert key == full_size._model_key(str(small_model) + "/")
    config = json.loads((small_model / "config.json").read_text())
    config["n_layer"] = 3
    (small_model / "config.json").write_text(json.dumps(config))
    assert full_size._model_key(str(small_model)) != key
    assert full_size._model_key("gpt2") != full_size._model_key("distilgpt2")


def test_default_run_uses_the_shipped_adapters_silently(monkeypatch, capsys):
    monkeypatch.delenv("COURSE_MODEL", raising=False)
    for name in paths.ADAPTER_NAMES:
        assert paths.shipped_adapter(name) == paths.SHIPPED_ADAPTERS / name
    monkeypatch.setenv("COURSE_MODEL", str(paths.SHIPPED_MODEL) + "/")  # same folder, spelled differently
    assert paths.shipped_adapter("english_ner") == paths.SHIPPED_ADAPTERS / "english_ner"
    assert capsys.readouterr().out == ""


def test_shipped_adapter_trains_a_fitting_adapter_for_another_model(small_model, monkeypatch, capsys, tmp_path):
    from peft import PeftModel

    from course_utils import load_base_model

    monkeypatch.setenv("COURSE_MODEL", str(small_model))
    monkeypatch.setattr(full_size, "QUICK_ADAPTER_STEPS", 2)
    folder = paths.shipped_adapter("spanish_sentiment")
    assert folder.name == "spanish_sentiment"
    assert folder.is_relative_to(tmp_path / "cache")
    out = capsys.readouterr().out
    assert out.count("is not the shipped model") == 1 and str(small_model) in out
    model = PeftModel.from_pretrained(load_base_model(), folder)  # fits: no size-mismatch error
    lora_a = model.base_model.model.transformer.h[0].attn.c_attn.lora_A["default"].weight
    assert tuple(lora_a.shape) == (16, 64)
    assert model.peft_config["default"].r == 16
    # Cached: the second call neither retrains nor prints again.
    stamp = (folder / "adapter_model.safetensors").stat().st_mtime_ns
    assert paths.shipped_adapter("spanish_sentiment") == folder
    assert (folder / "adapter_model.safetensors").stat().st_mtime_ns == stamp
    assert capsys.readouterr().out == ""


def test_adapter_for_model_rejects_unknown_names(small_model):
    with pytest.raises(ValueError, match="choose one of spanish_sentiment, english_ner"):
        full_size.adapter_for_model("french", str(small_model))


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
    assert tok("Hola")["input_ids"] == load_tokenizer(str(paths.SHIPPED_MODEL))("Hola")["input_ids"]
    assert full_size.full_size_gpt2_folder(tmp_path) == folder
    assert len(built) == 1  # reused, not rebuilt
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind
