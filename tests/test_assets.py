"""course_utils.assets: where the shipped files are, which model the course uses, the cache folder."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from course_utils import assets
from course_utils.adapter_format import read_safetensors_header, tensor_entries
from course_utils.maintenance.notebook_env import notebook_environ


def test_course_model_defaults_to_shipped(monkeypatch):
    monkeypatch.delenv("COURSE_MODEL", raising=False)
    assert Path(assets.course_model()) == assets.SHIPPED_MODEL
    assert (assets.SHIPPED_MODEL / "config.json").is_file()


def test_course_model_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_MODEL", str(tmp_path))
    assert assets.course_model() == str(tmp_path)
    monkeypatch.setenv("COURSE_MODEL", "  ")
    assert Path(assets.course_model()) == assets.SHIPPED_MODEL


def test_is_shipped_model(tmp_path):
    assert assets.is_shipped_model(str(assets.SHIPPED_MODEL))
    assert assets.is_shipped_model(str(assets.SHIPPED_MODEL / ".." / "tiny-gpt2"))
    assert not assets.is_shipped_model(str(tmp_path))
    assert not assets.is_shipped_model("gpt2")


def test_cache_is_outside_the_repository(monkeypatch, tmp_path):
    monkeypatch.delenv("PEFT_COURSE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert assets.cache_dir() == tmp_path / "peft-course"
    monkeypatch.setenv("PEFT_COURSE_CACHE", str(tmp_path / "c"))
    assert assets.cache_dir() == tmp_path / "c"


def test_course_model_by_architecture(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_MODEL", str(tmp_path))  # an explicit arch names a shipped base, whatever the override
    assert Path(assets.course_model("gpt2")) == assets.SHIPPED_MODEL
    assert Path(assets.course_model("llama")) == assets.SHIPPED_LLAMA
    assert assets.course_model() == str(tmp_path)
    with pytest.raises(ValueError, match=r"^No shipped model for arch='bert': choose one of 'gpt2', 'llama'\.$"):
        assets.course_model("bert")


def test_shipped_llama_config():
    gpt2 = json.loads((assets.SHIPPED_MODEL / "config.json").read_text())
    llama = json.loads((assets.SHIPPED_LLAMA / "config.json").read_text())
    assert llama["model_type"] == "llama" and llama["architectures"] == ["LlamaForCausalLM"]
    assert llama["tie_word_embeddings"] is False and gpt2["tie_word_embeddings"] is True
    # GPT-2's size, in Llama's names.
    assert (llama["num_hidden_layers"], llama["hidden_size"], llama["num_attention_heads"]) == (
        gpt2["n_layer"], gpt2["n_embd"], gpt2["n_head"])
    assert (llama["vocab_size"], llama["max_position_embeddings"]) == (gpt2["vocab_size"], gpt2["n_positions"])
    assert llama["eos_token_id"] == gpt2["eos_token_id"]


def test_shipped_llama_has_gpt2s_tokenizer():
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (assets.SHIPPED_LLAMA / name).read_bytes() == (assets.SHIPPED_MODEL / name).read_bytes()
    assert {p.name for p in assets.SHIPPED_LLAMA.iterdir()} == {
        "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}


def test_shipped_llama_size_is_close_to_gpt2s():
    gpt2 = tensor_entries(read_safetensors_header(assets.SHIPPED_MODEL / "model.safetensors"))
    llama = tensor_entries(read_safetensors_header(assets.SHIPPED_LLAMA / "model.safetensors"))
    count = {name: sum(math.prod(e["shape"]) for e in t.values()) for name, t in (("gpt2", gpt2), ("llama", llama))}
    assert count == {"gpt2": 940_800, "llama": 1_053_824}
    # The untied head is most of the difference: one more vocab x hidden matrix.
    assert llama["lm_head.weight"]["shape"] == [1024, 128] and "lm_head.weight" not in gpt2
    assert {e["dtype"] for e in llama.values()} == {"F32"}


def test_shipped_llama_loads_offline():
    """In a fresh process with the notebooks' environment (offline): the untied head, and the same tokens as GPT-2's tokenizer."""
    code = ("from course_utils.models import load_base_model, load_tokenizer; from course_utils import tasks; "
            "m = load_base_model(arch='llama'); t = load_tokenizer(arch='llama'); g = load_tokenizer(); "
            "e = tasks.task_splits('english_ner', 1, 1)[0][0]; "
            "print(type(m).__name__, m.lm_head.weight is m.get_input_embeddings().weight, "
            "sum(p.numel() for p in m.parameters()), t(e.prompt)['input_ids'] == g(e.prompt)['input_ids'])")
    env = {**notebook_environ(), "PYTHONPATH": str(Path(assets.__file__).parent.parent)}
    env.pop("COURSE_MODEL", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["LlamaForCausalLM", "False", "1053824", "True"]
