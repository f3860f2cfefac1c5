"""The shipped model and adapters: present, small, offline, and still good at their tasks."""
import json
from pathlib import Path

import pytest
import torch

from course_utils import shipped, tasks
from course_utils.assets import ADAPTER_NAMES, ASSETS, SHIPPED_ADAPTERS, SHIPPED_BASE_ID, SHIPPED_MODEL
from course_utils.maintenance.build_assets import SPLITS


def test_assets_are_small():
    total = sum(f.stat().st_size for f in ASSETS.rglob("*") if f.is_file())
    print(f"shipped assets: {total / 1e6:.2f} MB")
    assert total < 10e6  # two tiny models (GPT-2 3.8 MB, Llama 4.2 MB), their tokenizers and two adapters: 9.2 MB


@pytest.mark.parametrize("task", ADAPTER_NAMES)
def test_adapter_heldout_accuracy(task, tokenizer):
    from peft import PeftModel

    from course_utils import load_base_model
    from course_utils.generation import task_accuracy

    model = PeftModel.from_pretrained(load_base_model(), shipped.shipped_adapter(task))
    _, heldout = tasks.task_splits(task, **SPLITS)
    acc = task_accuracy(model, tokenizer, heldout)
    print(f"{task}: held-out exact-match accuracy {acc:.1%} on {len(heldout)} examples")
    assert acc >= 0.9


def test_switching_adapters_changes_the_output(tokenizer):
    from peft import PeftModel

    from course_utils import load_base_model
    from course_utils.generation import complete

    model = PeftModel.from_pretrained(load_base_model(), shipped.shipped_adapter("spanish_sentiment"),
                                      adapter_name="spanish_sentiment")
    model.load_adapter(shipped.shipped_adapter("english_ner"), adapter_name="english_ner")
    prompt = tasks.ner_prompt("Maria works for Acme in Paris.")
    outs = {}
    for name in ADAPTER_NAMES:
        model.set_adapter(name)
        outs[name] = complete(model, tokenizer, prompt)
    with model.disable_adapter():
        outs["base"] = complete(model, tokenizer, prompt)
    print(outs)
    assert outs["english_ner"].strip() == "Maria (PER), Acme (ORG), Paris (LOC)"
    assert len(set(outs.values())) == 3


def test_build_report_matches_assets():
    report = json.loads((ASSETS / "build_report.json").read_text())
    assert all(report[f"{t}_heldout_accuracy"] >= 0.9 for t in ADAPTER_NAMES)
    cfg = json.loads((SHIPPED_ADAPTERS / "english_ner" / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["base_model_name_or_path"] == SHIPPED_BASE_ID


# ---- shipped_adapter and the stand-ins for another COURSE_MODEL (course_utils.shipped)
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
    load_tokenizer(str(SHIPPED_MODEL)).save_pretrained(folder)
    monkeypatch.setenv("PEFT_COURSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(shipped, "_announced", set())
    return folder


def test_shipped_adapter_paths():
    for name in ADAPTER_NAMES:
        assert (shipped.shipped_adapter(name) / "adapter_model.safetensors").is_file()


def test_shipped_adapter_unknown_name_is_one_clear_line():
    with pytest.raises(ValueError, match="choose one of spanish_sentiment, english_ner"):
        shipped.shipped_adapter("french")


def test_shipped_adapter_missing_names_the_command(monkeypatch, tmp_path):
    monkeypatch.setattr(shipped, "SHIPPED_ADAPTERS", tmp_path)
    with pytest.raises(FileNotFoundError, match="build-assets"):
        shipped.shipped_adapter("english_ner")


def test_model_key_follows_the_folder(small_model):
    key = shipped.model_key(str(small_model))
    assert key == shipped.model_key(str(small_model) + "/")
    config = json.loads((small_model / "config.json").read_text())
    config["n_layer"] = 3
    (small_model / "config.json").write_text(json.dumps(config))
    assert shipped.model_key(str(small_model)) != key
    assert shipped.model_key("gpt2") != shipped.model_key("distilgpt2")


def test_default_run_uses_the_shipped_adapters_silently(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("COURSE_MODEL", raising=False)
    monkeypatch.setenv("PEFT_COURSE_CACHE", str(tmp_path))
    for name in ADAPTER_NAMES:
        folder = shipped.shipped_adapter(name)
        assert folder.name == name and folder.is_relative_to(tmp_path / shipped.LOCAL_COPIES)
        for f in (SHIPPED_ADAPTERS / name).iterdir():
            if f.name != "adapter_config.json":
                assert (folder / f.name).read_bytes() == f.read_bytes()
    monkeypatch.setenv("COURSE_MODEL", str(SHIPPED_MODEL) + "/")  # same folder, spelled differently
    assert shipped.shipped_adapter("english_ner") == folder.parent / "english_ner"
    assert capsys.readouterr().out == ""


def test_the_local_copy_names_this_machines_base_and_leaves_the_tracked_files_alone(monkeypatch, tmp_path):
    monkeypatch.delenv("COURSE_MODEL", raising=False)
    monkeypatch.setenv("PEFT_COURSE_CACHE", str(tmp_path))
    tracked = {f: f.read_bytes() for f in (SHIPPED_ADAPTERS / "english_ner").iterdir()}
    folder = shipped.shipped_adapter("english_ner")
    copied = json.loads((folder / "adapter_config.json").read_text())
    original = json.loads((SHIPPED_ADAPTERS / "english_ner" / "adapter_config.json").read_text())
    assert copied.pop("base_model_name_or_path") == str(SHIPPED_MODEL.resolve())
    assert copied == {k: v for k, v in original.items() if k != "base_model_name_or_path"}
    assert {f: f.read_bytes() for f in (SHIPPED_ADAPTERS / "english_ner").iterdir()} == tracked
    stamp = (folder / "adapter_model.safetensors").stat().st_mtime_ns
    assert shipped.shipped_adapter("english_ner") == folder  # written once, then only read
    assert (folder / "adapter_model.safetensors").stat().st_mtime_ns == stamp


def test_a_damaged_local_copy_is_rewritten(monkeypatch, tmp_path):
    monkeypatch.delenv("COURSE_MODEL", raising=False)
    monkeypatch.setenv("PEFT_COURSE_CACHE", str(tmp_path))
    folder = shipped.shipped_adapter("spanish_sentiment")
    (folder / "adapter_model.safetensors").write_bytes(b"")
    assert shipped.shipped_adapter("spanish_sentiment") == folder
    assert (folder / "adapter_model.safetensors").read_bytes() == (
        SHIPPED_ADAPTERS / "spanish_sentiment" / "adapter_model.safetensors").read_bytes()


def test_saving_a_reloaded_shipped_adapter_is_silent(monkeypatch, tmp_path):
    """The placeholder base made save_pretrained warn "Could not find a config file in course-tiny-gpt2"."""
    import warnings

    from peft import PeftModel

    from course_utils import load_base_model

    monkeypatch.delenv("COURSE_MODEL", raising=False)
    monkeypatch.setenv("PEFT_COURSE_CACHE", str(tmp_path / "cache"))
    model = PeftModel.from_pretrained(load_base_model(), shipped.shipped_adapter("english_ner"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.save_pretrained(tmp_path / "saved")
    assert [str(w.message) for w in caught if "Could not find a config file" in str(w.message)] == []
    saved = json.loads((tmp_path / "saved" / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == str(SHIPPED_MODEL.resolve())


def test_an_unwritable_cache_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.delenv("COURSE_MODEL", raising=False)
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("PEFT_COURSE_CACHE", str(tmp_path / "file"))
    with pytest.raises(OSError, match="set PEFT_COURSE_CACHE to a folder you can write to") as err:
        shipped.shipped_adapter("english_ner")
    assert "\n" not in str(err.value)


def test_shipped_adapter_trains_a_fitting_adapter_for_another_model(small_model, monkeypatch, capsys, tmp_path):
    from peft import PeftModel

    from course_utils import load_base_model

    monkeypatch.setenv("COURSE_MODEL", str(small_model))
    monkeypatch.setattr(shipped, "STANDIN_STEPS", 2)
    folder = shipped.shipped_adapter("spanish_sentiment")
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
    assert shipped.shipped_adapter("spanish_sentiment") == folder
    assert (folder / "adapter_model.safetensors").stat().st_mtime_ns == stamp
    assert capsys.readouterr().out == ""


def test_standin_adapter_rejects_unknown_names(small_model):
    with pytest.raises(ValueError, match="choose one of spanish_sentiment, english_ner"):
        shipped.standin_adapter("french", str(small_model))


