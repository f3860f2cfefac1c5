"""course_utils.folders.staged_folder: a folder appears whole or not at all; nothing is lost."""
import pytest

from course_utils.folders import ASIDE, STAGE, siblings, staged_folder


def _hidden(folder):
    return [p.name for p in folder.parent.iterdir() if p.name.startswith(".")]


def test_new_folder_appears_whole(tmp_path):
    target = tmp_path / "out"
    with staged_folder(target) as stage:
        (stage / "a.txt").write_text("a")
        assert not target.exists()  # nothing visible until the block ends
    assert (target / "a.txt").read_text() == "a"
    assert _hidden(target) == []


def test_failure_leaves_the_old_folder_and_no_stage(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("keep me")
    with pytest.raises(RuntimeError):
        with staged_folder(target, replace=True) as stage:
            (stage / "new.txt").write_text("half")
            raise RuntimeError("killed mid-write")
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert siblings(target, STAGE) == [] and siblings(target, ASIDE) == []


def test_existing_folder_is_refused_unless_replace(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        with staged_folder(target):
            raise AssertionError("must not run")
    with staged_folder(target, replace=True) as stage:
        (stage / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert _hidden(target) == []


def test_a_file_in_the_way_is_refused(tmp_path):
    target = tmp_path / "out"
    target.write_text("a file")
    with pytest.raises(FileExistsError, match="is a file"):
        with staged_folder(target, replace=True):
            pass
    assert target.read_text() == "a file"
