"""course_utils.maintenance.repo: tooling that needs the checkout says so in one line when it is absent."""
import pytest

from course_utils.maintenance import repo


def test_paths_point_into_the_checkout():
    assert (repo.REPO / "pyproject.toml").is_file()
    assert repo.SOLUTIONS.parent == repo.EXERCISES and repo.SOLUTIONS.is_dir()


def test_missing_checkout_is_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="git checkout of the course") as info:
        repo.require_checkout(tmp_path / "exercises", "exercises build")
    assert "\n" not in str(info.value)
    assert repo.require_checkout(tmp_path, "x") == tmp_path
