"""course_utils.maintenance.repo: where the tooling finds the course's files."""
from course_utils.maintenance import repo


def test_paths_point_into_the_checkout():
    assert (repo.REPO / "pyproject.toml").is_file()
    assert repo.SOLUTIONS.parent == repo.EXERCISES and repo.SOLUTIONS.is_dir()
