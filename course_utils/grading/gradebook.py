"""Gradebooks: shards of a batch, the CSV, and the merge of several shards' JSON lines.

``python -m course_utils grade --shard I/N`` grades a deterministic slice of the paths it is given (sorted,
every N-th from the I-th, I counted from 0, as Slurm's ``SLURM_ARRAY_TASK_ID`` and Kubernetes'
``JOB_COMPLETION_INDEX`` count), each shard writing its JSON lines; ``python -m course_utils merge
A.jsonl B.jsonl --csv gradebook.csv`` joins them into one gradebook (one row per notebook, a column per
question) and says which shards or lines are missing or repeated. Used by ``grader.py``.
"""
from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` as (I, N), 0 <= I < N; a ValueError with a one-line fix otherwise."""
    m = _SHARD.match(str(text))
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        raise ValueError(f"--shard {text!r}: expected I/N with 0 <= I < N (e.g. --shard 0/4 ... --shard 3/4)")
    return int(m.group(1)), int(m.group(2))


def select_shard(paths: list[Path], shard: str) -> list[Path]:
    """The paths of shard ``I/N``: sorted by path, every N-th from the I-th. The N shards partition ``paths``."""
    i, n = parse_shard(shard)
    return sorted(paths, key=str)[i::n]


def _row_value(result, key, default=""):
    return result.get(key, default) if isinstance(result, dict) else getattr(result, key, default)


def write_csv(results, path: str | Path) -> None:
    """A gradebook: one row per submission, one column per question (points earned). ``results`` are
    SubmissionResults or their JSON dicts."""
    ids: list[str] = []
    rows = []
    for r in results:
        questions = [q if isinstance(q, dict) else vars(q) for q in _row_value(r, "questions", []) or []]
        ids += [q["id"] for q in questions if q.get("id") not in ids]
        rows.append((r, {q.get("id"): q.get("points") for q in questions}))
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["notebook", "exercise", "learner", "score", "max_score", *ids, "messages"])
        for r, pts in rows:
            w.writerow([_row_value(r, "notebook"), _row_value(r, "exercise") or "", _row_value(r, "learner"),
                        _row_value(r, "score"),
                        _row_value(r, "max_score"), *[pts.get(i, "") for i in ids],
                        " | ".join(_row_value(r, "messages", []) or [])])


def read_results(paths: list[str]) -> tuple[list[dict], list[str]]:
    """The result objects of JSON-lines files, and one problem line per unreadable file or line."""
    results, problems = [], []
    for name in paths:
        try:
            lines = Path(name).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{name}: could not read it ({type(exc).__name__})")
            continue
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                obj = None
            if not isinstance(obj, dict) or not isinstance(obj.get("notebook"), str):
                problems.append(f"{name}:{n}: not a result line of `grade --json`: skipped")
                continue
            results.append(obj)
    return results, problems


def merge(results: list[dict]) -> tuple[list[dict], list[str]]:
    """One result per notebook, sorted by path; problems name repeated notebooks and missing shards."""
    problems, by_path = [], {}
    for r in results:
        if r["notebook"] in by_path:
            problems.append(f"{r['notebook']}: graded in more than one shard; kept the last")
        by_path[r["notebook"]] = r
    shards = {r.get("shard") for r in results if isinstance(r.get("shard"), str) and r.get("shard")}
    counts = set()
    for s in shards:
        try:
            counts.add(parse_shard(s)[1])
        except ValueError:
            problems.append(f"unknown shard label {s!r}")
    for n in counts:
        missing = sorted(set(range(n)) - {parse_shard(s)[0] for s in shards if _SHARD.match(s)})
        if missing:
            problems.append(f"shards {', '.join(f'{i}/{n}' for i in missing)} are missing (no lines from them)")
    return [by_path[k] for k in sorted(by_path)], problems


def run_merge(paths: list[str], csv_path: str | None = None, json_path: str | None = None) -> int:
    """CLI entry of ``merge``: 0 when every file and line was a complete set of results, 1 otherwise."""
    results, problems = read_results(paths)
    merged, more = merge(results)
    problems += more
    for p in problems:
        print(f"merge: {p}", file=sys.stderr)
    try:
        if csv_path:
            write_csv(merged, csv_path)
        if json_path:
            Path(json_path).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in merged),
                                       encoding="utf-8")
    except OSError as exc:
        print(f"merge: could not write: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return 1
    print(f"merge: {len(merged)} submissions from {len(paths)} files"
          f"{', ' + str(len(problems)) + ' problems' if problems else ''}", file=sys.stderr)
    return 1 if problems else 0
