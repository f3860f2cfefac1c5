from pathlib import Path

import pytest

from course_utils import paths


def test_course_model_defaults_to_shipped(monkeypatch):
    monkeypatch.delenv("COURSE_MODEL", raising=False)
    assert Path(paths.course_model()) == paths.SHIPPED_MODEL
    assert (paths.SHIPPED_MODEL / "config.json").is_file()


def test_course_model_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_MODEL", str(tmp_path))
    assert paths.course_model() == str(tmp_path)
    monkeypatch.setenv("COURSE_MODEL", "  ")
    assert Path(paths.course_model()) == paths.SHIPPED_MODEL


def test_shipped_adapter_paths():
    for name in paths.ADAPTER_NAMES:
        assert (paths.shipped_adapter(name) / "adapter_model.safetensors").is_file()


def test_shipped_adapter_unknown_name_is_one_clear_line():
    with pytest.raises(ValueError, match="choose one of spanish_sentiment, english_ner"):
        paths.shipped_adapter("french")


def test_shipped_adapter_missing_names_the_command(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "SHIPPED_ADAPTERS", tmp_path)
    with pytest.raises(FileNotFoundError, match="build-assets"):
        paths.shipped_adapter("english_ner")
