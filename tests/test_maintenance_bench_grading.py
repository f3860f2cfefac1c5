"""The grading benchmark's class batch and its floor (the full measurement runs in `make bench`)."""
from __future__ import annotations

from course_utils.maintenance import bench_grading
from course_utils.maintenance.repo import SOLUTIONS


def test_class_batch_alternates_solutions_and_stubs(tmp_path):
    n = bench_grading.class_batch(tmp_path, 3)
    exercises = len(list(SOLUTIONS.glob("[0-9]*.ipynb")))
    assert n == 3 * exercises == len(list(tmp_path.glob("*.ipynb")))
    first = next(iter(sorted(SOLUTIONS.glob("[0-9]*.ipynb"))))
    assert (tmp_path / f"{first.stem}_s000.ipynb").read_bytes() == first.read_bytes()
    assert (tmp_path / f"{first.stem}_s001.ipynb").read_bytes() != first.read_bytes()


def test_ratio_is_wall_time_over_the_floor(monkeypatch):
    class Run:
        stdout = "{}\n" * 10
        returncode = 0

    monkeypatch.setattr(bench_grading, "import_floor_seconds", lambda: 4.0)
    monkeypatch.setattr(bench_grading.subprocess, "run", lambda *a, **k: Run())
    times = iter([100.0, 130.0])
    monkeypatch.setattr(bench_grading.time, "perf_counter", lambda: next(times))
    report = bench_grading.grading_throughput(students=2, jobs=2)
    assert report["submissions"] == 10 and report["floor_s"] == 20.0 and report["ratio"] == 1.5
