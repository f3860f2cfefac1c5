"""course_utils.grading.collect: a question's evidence copied out of the submission's folder without following
a link, opening a FIFO or passing the size limits."""
from __future__ import annotations

import os

from course_utils.grading import collect as collect_module
from course_utils.grading.collect import collect


def _evidence(tmp_path):
    root = tmp_path / "work" / ".evidence"
    (root / "ex01_q1" / "models" / "m1").mkdir(parents=True)
    (root / "ex01_q1" / "manifest.json").write_text("{}")
    (root / "ex01_q1" / "models" / "m1" / "model.json").write_text("{}")
    return root


def test_regular_files_and_folders_are_copied(tmp_path):
    root = _evidence(tmp_path)
    assert collect(root, "ex01_q1", tmp_path / "copy")
    assert (tmp_path / "copy" / "manifest.json").read_text() == "{}"
    assert (tmp_path / "copy" / "models" / "m1" / "model.json").is_file()


def test_links_fifos_and_a_linked_root_are_never_followed(tmp_path):
    root = _evidence(tmp_path)
    secret = tmp_path / "host_secret"
    secret.write_text("root's data")
    (root / "ex01_q1" / "stolen.json").symlink_to(secret)
    (root / "ex01_q1" / "models" / "linked").symlink_to(tmp_path)
    os.mkfifo(root / "ex01_q1" / "pipe")
    (root / "ex01_q1" / "zero").symlink_to("/dev/zero")
    assert collect(root, "ex01_q1", tmp_path / "copy")
    copied = sorted(str(p.relative_to(tmp_path / "copy")) for p in (tmp_path / "copy").rglob("*"))
    assert copied == ["manifest.json", "models", "models/m1", "models/m1/model.json"]
    # the whole evidence folder swapped for a link: nothing is read through it
    (tmp_path / "work" / "moved").mkdir()
    os.rename(root / "ex01_q1", tmp_path / "work" / "moved" / "ex01_q1")
    (root / "ex01_q1").symlink_to(tmp_path / "work" / "moved" / "ex01_q1")
    assert not collect(root, "ex01_q1", tmp_path / "copy2") and not (tmp_path / "copy2").exists()
    linked_root = tmp_path / "linked_root"
    linked_root.symlink_to(root)
    assert not collect(linked_root, "ex01_q1", tmp_path / "copy3")


def test_size_and_count_limits(tmp_path, monkeypatch):
    root = _evidence(tmp_path)
    (root / "ex01_q1" / "big.bin").write_bytes(b"x" * 2048)
    monkeypatch.setattr(collect_module, "MAX_FILE_BYTES", 1024)
    assert not collect(root, "ex01_q1", tmp_path / "copy")
    monkeypatch.setattr(collect_module, "MAX_FILE_BYTES", 4096)
    monkeypatch.setattr(collect_module, "MAX_ENTRIES", 2)
    assert not collect(root, "ex01_q1", tmp_path / "copy2")
    assert not collect(root, "missing", tmp_path / "copy3")
