"""course_utils.maintenance.bench_grading: the class batch and the command `make bench` times."""
from __future__ import annotations

from course_utils.grading import EXERCISE_GLOB
from course_utils.maintenance import bench_grading
from course_utils.maintenance.repo import SOLUTIONS


def test_class_batch_copies_every_solution(tmp_path):
    n = bench_grading.class_batch(tmp_path, 3)
    solutions = sorted(SOLUTIONS.glob(EXERCISE_GLOB))
    assert len(solutions) == len(list(SOLUTIONS.parents[1].glob("notebooks/[0-9][0-9]_*.ipynb")))  # one per lesson
    assert n == 3 * len(solutions) == len(list(tmp_path.glob("*.ipynb")))
    for solution in solutions:
        for s in range(3):
            assert (tmp_path / f"{solution.stem}_s{s:03d}.ipynb").read_bytes() == solution.read_bytes()


def test_grade_command_is_the_instructors(tmp_path):
    cmd = bench_grading.grade_command(tmp_path, 2)
    assert cmd[1:5] == ["-m", "course_utils", "grade", str(tmp_path)] and cmd[-2:] == ["--jobs", "2"]
