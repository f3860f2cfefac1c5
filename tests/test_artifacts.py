import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from course_utils import artifacts
from course_utils.shipped import shipped_adapter

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "01_save_adapter.ipynb"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lesson") / "saved" / "01_adapter"
    artifacts.lesson1_adapter(folder)
    return folder


def test_missing_folder_is_rebuilt_and_valid(built, capsys):
    assert artifacts.is_lesson1_adapter(built)
    assert sorted(p.name for p in built.iterdir()) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    assert not [p for p in built.parent.iterdir() if p.name.startswith(".")]  # no staging folder left behind


def test_a_rebuild_is_announced_and_a_reuse_is_not(built, tmp_path, capsys, monkeypatch):
    fresh = tmp_path / "01_adapter"
    artifacts.lesson1_adapter(fresh)
    rebuilt_line = capsys.readouterr().out
    def must_not_rebuild(folder, wait_s=0):
        pytest.fail("a valid folder must be reused")

    monkeypatch.setattr(artifacts, "_rebuild", must_not_rebuild)
    artifacts.lesson1_adapter(fresh)
    found_line = artifacts.MESSAGE.format(folder=fresh.as_posix()) + "\n"
    assert capsys.readouterr().out == found_line
    assert rebuilt_line == artifacts.REBUILT.format(folder=fresh.as_posix()) + "\n" + found_line


def test_rebuild_is_deterministic_and_trained(built):
    weights = load_file(built / "adapter_model.safetensors")
    memory = {k: v for k, v in artifacts.lesson1_model().state_dict().items() if "lora_" in k}
    assert len(weights) == len(memory) == 8
    for name, tensor in weights.items():
        match = [v for k, v in memory.items() if k.replace(".default", "") == name]
        assert len(match) == 1 and torch.equal(match[0], tensor)
    assert all(t.any() for k, t in weights.items() if "lora_B" in k)


def test_broken_folder_is_replaced(built, tmp_path):
    folder = tmp_path / "01_adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text((built / "adapter_config.json").read_text())
    (folder / "adapter_model.safetensors").write_bytes((built / "adapter_model.safetensors").read_bytes()[:-100])
    assert not artifacts.is_lesson1_adapter(folder)
    artifacts.lesson1_adapter(folder, wait_s=0)
    assert artifacts.is_lesson1_adapter(folder)


def test_other_adapters_are_not_taken_for_lesson1(built, tmp_path):
    assert not artifacts.is_lesson1_adapter(shipped_adapter("english_ner"))
    assert not artifacts.is_lesson1_adapter(tmp_path / "nothing")
    config = json.loads((built / "adapter_config.json").read_text())
    config["r"] = 4
    other = tmp_path / "other"
    other.mkdir()
    (other / "adapter_config.json").write_text(json.dumps(config))
    (other / "adapter_model.safetensors").write_bytes((built / "adapter_model.safetensors").read_bytes())
    assert not artifacts.is_lesson1_adapter(other)


def test_lesson1_notebook_spells_out_the_same_recipe():
    import nbformat

    source = "\n".join(c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code")
    lora = artifacts.LESSON1_LORA
    assert (f'LoraConfig(r={lora["r"]}, lora_alpha={lora["lora_alpha"]}, '
            f'target_modules={json.dumps(lora["target_modules"])}, task_type="{lora["task_type"]}")') in source
    assert f"torch.manual_seed({artifacts.LESSON1_SEED})" in source
    assert f"steps={artifacts.LESSON1_STEPS}, seed={artifacts.LESSON1_SEED}" in source
    assert f'save_pretrained("{artifacts.LESSON1_FOLDER}")' in source
