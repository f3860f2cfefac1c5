import json
import shutil

import pytest

from course_utils import assets
from course_utils.maintenance.build_assets import build_assets, build_llama

MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def test_short_build_writes_a_loadable_model_and_adapters(tmp_path):
    dest = tmp_path / "assets"
    report = build_assets(dest, pretrain_steps=4, adapter_steps={t: 2 for t in assets.ADAPTER_NAMES}, llama_steps=2)
    for name in MODEL_FILES:
        assert (dest / "tiny-gpt2" / name).is_file()
        assert (dest / "tiny-llama" / name).is_file()
    for task in assets.ADAPTER_NAMES:
        folder = dest / "adapters" / task
        assert sorted(p.name for p in folder.iterdir()) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
        assert 0.0 <= report[f"{task}_heldout_accuracy"] <= 1.0
    written = json.loads((dest / "build_report.json").read_text())
    assert written["base_final_loss"] == report["base_final_loss"]
    assert written["llama_final_loss"] == report["llama_final_loss"]
    # The Llama base gets the GPT-2 base's tokenizer, byte for byte.
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (dest / "tiny-llama" / name).read_bytes() == (dest / "tiny-gpt2" / name).read_bytes()
    config = json.loads((dest / "tiny-llama" / "config.json").read_text())
    assert config["model_type"] == "llama" and config["tie_word_embeddings"] is False


def test_build_is_reproducible(tmp_path):
    steps = {t: 2 for t in assets.ADAPTER_NAMES}
    a = build_assets(tmp_path / "a", pretrain_steps=3, adapter_steps=steps, llama_steps=2)
    b = build_assets(tmp_path / "b", pretrain_steps=3, adapter_steps=steps, llama_steps=2)
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    for rel in ("tiny-gpt2/model.safetensors", "adapters/english_ner/adapter_model.safetensors",
                "tiny-llama/model.safetensors"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_build_llama_changes_only_tiny_llama(tmp_path):
    dest = tmp_path / "assets"
    shutil.copytree(assets.SHIPPED_MODEL, dest / "tiny-gpt2")
    shutil.copy(assets.ASSETS / "build_report.json", dest / "build_report.json")
    before = {p.relative_to(dest): p.read_bytes() for p in (dest / "tiny-gpt2").iterdir()}
    old_report = json.loads((dest / "build_report.json").read_text())
    assert build_llama(dest, steps=2) == {"llama_final_loss": pytest.approx(6.7, abs=0.5)}  # ~ln(1024) untrained
    assert {p.relative_to(dest): p.read_bytes() for p in (dest / "tiny-gpt2").iterdir()} == before
    new_report = json.loads((dest / "build_report.json").read_text())
    assert {k: v for k, v in new_report.items() if k != "llama_final_loss"} == {
        k: v for k, v in old_report.items() if k != "llama_final_loss"}
    assert sorted(p.name for p in dest.iterdir()) == ["build_report.json", "tiny-gpt2", "tiny-llama"]
    assert (dest / "tiny-llama" / "tokenizer.json").read_bytes() == (dest / "tiny-gpt2" / "tokenizer.json").read_bytes()


def test_build_llama_needs_the_gpt2_tokenizer(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"holds no tokenizer: build everything first \(make assets\)\.$"):
        build_llama(tmp_path)
    assert list(tmp_path.iterdir()) == []
