"""course_utils.assets: where the shipped files are, which model the course uses, the cache folder."""
from pathlib import Path

from course_utils import assets


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
