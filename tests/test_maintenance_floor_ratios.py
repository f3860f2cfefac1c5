"""course_utils.maintenance.floor_ratios: the arithmetic and the report; no wall-clock time is asserted."""
import json
import sys

import pytest

from course_utils.maintenance import floor_ratios
from course_utils.maintenance.floor_ratios import FloorRatio


def test_floor_and_ratio():
    r = FloorRatio("x", units=15, t_import_s=4.0, cores=2, wall_s=36.0)
    assert r.floor_s == 30.0 and r.ratio == pytest.approx(1.2)
    assert r.as_dict()["ratio"] == 1.2


def test_measure_times_a_command_between_import_runs(tmp_path):
    result = floor_ratios.measure([sys.executable, "-c", "pass"], units=3, label="noop", import_runs=2)
    assert result.units == 3 and result.cores >= 1 and result.t_import_s > 0 and result.wall_s > 0
    md = floor_ratios.write([result], tmp_path)
    assert "| `noop` | 3 |" in md.read_text()
    assert json.loads((tmp_path / "floor_ratios.json").read_text())[0]["command"] == "noop"


def test_a_failing_command_is_an_error_not_a_time():
    with pytest.raises(RuntimeError, match="exit 3"):
        floor_ratios.time_command([sys.executable, "-c", "import sys; sys.exit(3)"])


def test_counts_every_notebook_the_check_runs():
    assert floor_ratios.count_notebooks() >= 15
