"""Shards and merged gradebooks: N shards partition a batch, and merging their JSON lines gives one row per
notebook. The 2-shard test runs the real CLI on files that fail before a kernel starts (fast)."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from course_utils.grading.checks import CHECKS
from course_utils.grading.gradebook import (
    merge,
    parse_shard,
    read_results,
    select_shard,
)
from course_utils.maintenance.notebook_env import notebook_environ

EX01_MAX = sum(c.points for gid, c in CHECKS.items() if gid.startswith("ex01_"))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "course_utils", *args], check=False, capture_output=True, text=True,
                          timeout=300, env=notebook_environ())


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_shards_partition_the_paths(n):
    paths = [Path(f"s/{name}.ipynb") for name in "qwertyuiopasd"]
    shards = [select_shard(paths[::-1], f"{i}/{n}") for i in range(n)]
    assert sorted(p for s in shards for p in s) == sorted(paths)
    assert shards == [select_shard(paths, f"{i}/{n}") for i in range(n)]  # order of the input does not matter


@pytest.mark.parametrize("bad", ["2/2", "1", "a/b", "-1/2", "0/0"])
def test_bad_shard_says_how_to_write_it(bad):
    with pytest.raises(ValueError, match="expected I/N"):
        parse_shard(bad)


def test_merge_reports_missing_and_repeated_shards():
    rows = [{"notebook": "a", "shard": "0/3"}, {"notebook": "b", "shard": "2/3"}, {"notebook": "a", "shard": "2/3"}]
    merged, problems = merge(rows)
    assert [r["notebook"] for r in merged] == ["a", "b"]
    assert any("shards 1/3 are missing" in p for p in problems) and any("more than one shard" in p for p in problems)


def test_two_shards_merge_into_one_gradebook(tmp_path, requires_sandbox):
    subs = tmp_path / "subs"
    subs.mkdir()
    for i in range(5):
        (subs / f"01_save_adapter_{i}.ipynb").write_text("" if i % 2 else "{ broken")
    outs = []
    for i in range(2):
        run = cli("grade", str(subs), "--json", "--shard", f"{i}/2")
        assert run.returncode == 0, run.stderr
        outs.append(tmp_path / f"shard{i}.jsonl")
        outs[-1].write_text(run.stdout)
    assert [len(p.read_text().splitlines()) for p in outs] == [3, 2]
    gradebook = tmp_path / "gradebook.csv"
    run = cli("merge", *map(str, outs), "--csv", str(gradebook), "--json-out", str(tmp_path / "all.jsonl"))
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader(gradebook.open()))
    assert sorted(Path(r["notebook"]).name for r in rows) == [f"01_save_adapter_{i}.ipynb" for i in range(5)]
    assert all(r["max_score"] == str(EX01_MAX) and r["score"] == "0" for r in rows)
    assert {json.loads(line)["shard"] for line in (tmp_path / "all.jsonl").read_text().splitlines()} == {"0/2", "1/2"}


def test_merge_of_a_broken_file_says_which_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"notebook": "x.ipynb", "score": 1}\nnot json\n[1]\n')
    results, problems = read_results([str(bad), str(tmp_path / "nope.jsonl")])
    assert [r["notebook"] for r in results] == ["x.ipynb"]
    assert problems == [f"{bad}:2: not a result line of `grade --json`: skipped",
                        f"{bad}:3: not a result line of `grade --json`: skipped",
                        f"{tmp_path / 'nope.jsonl'}: could not read it (FileNotFoundError)"]
