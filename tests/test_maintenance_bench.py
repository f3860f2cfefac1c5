"""`make bench` code on the tiny model, one repeat: it runs and writes its table and plot. No timing is asserted."""
import re

import pytest

from course_utils.maintenance import bench
from course_utils.maintenance.build_assets import MODEL_CONFIG


def _expected_lora_params(targets: list[str], rank: int) -> int:
    d, layers = MODEL_CONFIG["n_embd"], MODEL_CONFIG["n_layer"]
    shapes = {"c_attn": [(d, 3 * d)], "c_proj": [(d, d), (4 * d, d)], "c_fc": [(d, 4 * d)]}  # (in, out) per module
    return layers * sum(rank * (i + o) for t in targets for i, o in shapes[t])


def test_bench_tiny_writes_table_and_plot(tmp_path):
    md = bench.run_bench(models=("tiny",), repeats=1, out=tmp_path)
    text = md.read_text()
    png = tmp_path / "results.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from course_utils.bench_table import bench_table

    table = bench_table(operations=["set_adapter"], sizes=[(8, "c_attn")], model="tiny", path=tmp_path / "results.json")
    assert "set_adapter (switch between two loaded)" in table and "r=8 c_attn" in table
    rows = re.findall(r"^\| tiny \| (\S+) \| (\d+) \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \|", text, re.M)
    assert len(rows) == len(bench.RANKS) * len(bench.TARGETS)
    full = (bench.model_dir("tiny") / "model.safetensors").stat().st_size
    for targets, rank, params, adapter_bytes, full_bytes in rows:
        params, adapter_bytes = int(params.replace(",", "")), int(adapter_bytes.replace(",", ""))
        assert params == _expected_lora_params(bench.TARGETS[targets], int(rank))
        # float32 weights plus a JSON header of a few KiB
        assert 4 * params < adapter_bytes < 4 * params + 64 * 1024
        assert int(full_bytes.replace(",", "")) == full
    for op in ("save full model", "load full model", "PeftModel.from_pretrained", "PeftModel.load_adapter",
               "hotswap_adapter", "set_adapter"):
        line = next(row for row in text.splitlines() if row.startswith("| tiny | " + op))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert float(cells[2]) > 0  # a measured median, whatever its value
        assert cells[4] == "n/a" or float(cells[4]) >= 0


def test_bench_rejects_bad_input(tmp_path, capsys):
    with pytest.raises(ValueError, match="Unknown bench model"):
        bench.model_dir("gpt5")
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        bench.run_bench(models=("tiny",), repeats=0, out=tmp_path)
    assert bench.main(["--models", "tiny", "--repeats", "0", "--out", str(tmp_path)]) == 1
    assert "repeats must be at least 1" in capsys.readouterr().out
