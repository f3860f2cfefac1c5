import json

from course_utils import assets
from course_utils.maintenance.build_assets import build_assets


def test_short_build_writes_a_loadable_model_and_adapters(tmp_path):
    dest = tmp_path / "assets"
    report = build_assets(dest, pretrain_steps=4, adapter_steps={t: 2 for t in assets.ADAPTER_NAMES})
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (dest / "tiny-gpt2" / name).is_file()
    for task in assets.ADAPTER_NAMES:
        folder = dest / "adapters" / task
        assert sorted(p.name for p in folder.iterdir()) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
        assert 0.0 <= report[f"{task}_heldout_accuracy"] <= 1.0
    assert json.loads((dest / "build_report.json").read_text())["base_final_loss"] == report["base_final_loss"]


def test_build_is_reproducible(tmp_path):
    steps = {t: 2 for t in assets.ADAPTER_NAMES}
    a = build_assets(tmp_path / "a", pretrain_steps=3, adapter_steps=steps)
    b = build_assets(tmp_path / "b", pretrain_steps=3, adapter_steps=steps)
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    for rel in ("tiny-gpt2/model.safetensors", "adapters/english_ner/adapter_model.safetensors"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
