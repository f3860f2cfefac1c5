"""course_utils.maintenance.floor_ratios: the arithmetic and the report; no wall-clock time is asserted."""
import json
import sys

import pytest

from course_utils.maintenance import floor_ratios
from course_utils.maintenance.floor_ratios import FloorRatio


def test_floor_and_ratio_are_the_median_of_paired_runs():
    # each run is judged against the import time measured next to it: 36/30, 40/30 (t 4), 60/45 (t 6)
    r = FloorRatio("x", units=15, cores=2, pairs=((4.0, 36.0), (4.0, 40.0), (6.0, 60.0)))
    assert r.ratios() == pytest.approx([1.2, 4 / 3, 4 / 3])
    assert r.ratio == pytest.approx(4 / 3) and r.spread == pytest.approx((1.2, 4 / 3))
    assert r.t_import_s == 4.0 and r.floor_s == 30.0 and r.wall_s == 40.0
    assert r.as_dict()["ratio"] == 1.333 and r.as_dict()["spread"] == [1.2, 1.333]


def test_measure_pairs_each_run_with_its_own_import_time(tmp_path, monkeypatch):
    imports = iter([1.0, 3.0, 5.0, 7.0])
    monkeypatch.setattr(floor_ratios, "bare_import_times", lambda runs=1, **_: [next(imports)])
    result = floor_ratios.measure([sys.executable, "-c", "pass"], units=3, label="noop", repeats=2)
    assert [t for t, _ in result.pairs] == [2.0, 6.0] and all(w > 0 for _, w in result.pairs)
    md = floor_ratios.write([result], tmp_path, {"torch": 2.0, "transformers": 3.0, "bitsandbytes": 4.0,
                                                 "peft": 5.0})
    text = md.read_text()
    assert "| `noop` | 3 | 2 |" in text and "| `torch` | 2.00 | 40% |" in text
    saved = json.loads((tmp_path / "floor_ratios.json").read_text())
    assert saved["commands"][0]["command"] == "noop" and saved["imports_s"]["peft"] == 5.0


def test_a_failing_command_is_an_error_not_a_time():
    with pytest.raises(RuntimeError, match="exit 3"):
        floor_ratios.time_command([sys.executable, "-c", "import sys; sys.exit(3)"])


def test_counts_every_notebook_the_check_runs():
    assert floor_ratios.count_notebooks() >= 15
