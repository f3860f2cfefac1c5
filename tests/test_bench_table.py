"""course_utils.bench_table: the make-bench rows the lessons show (package data: course_utils/data/bench_results.json)."""
import json

import pytest

from course_utils.bench_table import bench_table, load_results
from course_utils.maintenance import bench

LESSON_KEYS = ["save_full", "save_adapter", "load_full", "load_full_forward", "peft_from_pretrained",
               "load_adapter", "hotswap_adapter", "set_adapter"]


def test_committed_results_have_what_the_lessons_ask_for_and_match_the_markdown():
    results = load_results()
    md = (bench.OUT / "results.md").read_text()
    for model in bench.MODELS:
        keys = [m["key"] for m in results["measures"] if m["model"] == model]
        assert keys == LESSON_KEYS, model
    for m in results["measures"]:  # written by the same run as results.md
        row = next(line for line in md.splitlines() if line.startswith(f"| {m['model']} | {m['operation']} |"))
        assert float(row.split("|")[3]) == pytest.approx(m["median_ms"], abs=0.006)
    for s in results["sizes"]:
        assert f"| {s['model']} | {s['targets']} | {s['rank']} | {s['lora_params']:,} | {s['adapter_bytes']:,} |" in md


def test_table_rows_come_from_the_file(tmp_path):
    results = load_results()
    path = tmp_path / "results.json"
    results["measures"] = [dict(m, median_ms=1234.5) if m["key"] == "set_adapter" else m for m in results["measures"]]
    path.write_text(json.dumps(results))
    text = bench_table(operations=["set_adapter"], sizes=[(8, "c_attn")], path=path)
    row = next(r for r in results["sizes"] if r["model"] == "gpt2-124M" and r["rank"] == 8 and r["targets"] == "c_attn")
    assert "1234.5 ms" in text
    assert f"{row['adapter_bytes']:,}" in text and f"{row['full_bytes'] / row['adapter_bytes']:.0f}x" in text
    assert "hotswap" not in text  # only the rows asked for
    tiny = bench_table(operations=["set_adapter"], model="tiny", path=path)
    assert "tiny" in tiny.splitlines()[0]


def test_bad_requests_and_missing_file_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `make bench` first"):
        bench_table(operations=["set_adapter"], path=tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="run `make bench` again"):
        load_results(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="no operation 'teleport'.*set_adapter"):
        bench_table(operations=["teleport"])
    with pytest.raises(ValueError, match="did not measure r=3 on c_attn"):
        bench_table(sizes=[(3, "c_attn")])
