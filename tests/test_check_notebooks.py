"""scripts/check_notebooks.py (`make check-notebooks`) on tiny generated notebooks; no timing is asserted."""
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output
from script_loader import load_script

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "check_notebooks.py"


def _notebook(path: Path, cells: list[tuple[str, str]]) -> Path:
    """A notebook whose stored outputs are the given stdout texts (as if executed)."""
    nb = new_notebook(cells=[new_code_cell(src, execution_count=i + 1,
                                           outputs=[new_output("stream", name="stdout", text=out)] if out else [])
                             for i, (src, out) in enumerate(cells)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, path)
    return path


def _run(*args, cwd=ROOT):
    run = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, cwd=cwd)
    return run.returncode, run.stdout + run.stderr


def test_verdict_floor_and_ratio():
    cnb = load_script("check_notebooks")
    floor, ratio, ok = cnb.verdict(n=10, t=4.0, cores=2, wall=24.0, max_ratio=1.25)
    assert floor == 20.0 and ratio == pytest.approx(1.2) and ok
    assert not cnb.verdict(10, 4.0, 2, 25.1, 1.25)[2]
    with pytest.raises(ValueError, match="at least one notebook"):
        cnb.verdict(0, 4.0, 2, 1.0, 1.25)


def test_find_notebooks_defaults_and_errors(tmp_path):
    cnb = load_script("check_notebooks")
    (tmp_path / "notebooks" / ".ipynb_checkpoints").mkdir(parents=True)
    (tmp_path / "exercises" / "solutions").mkdir(parents=True)
    for rel in ["notebooks/01_a.ipynb", "notebooks/.ipynb_checkpoints/01_a-checkpoint.ipynb",
                "exercises/solutions/01_a.ipynb", "exercises/01_a.ipynb", "exercises/notes.md"]:
        (tmp_path / rel).write_text("{}")
    found = [p.relative_to(tmp_path.resolve()).as_posix() for p in cnb.find_notebooks(None, root=tmp_path)]
    assert found == ["notebooks/01_a.ipynb", "exercises/solutions/01_a.ipynb", "exercises/01_a.ipynb"]
    assert cnb.find_notebooks(None, root=tmp_path / "exercises" / "solutions") == []
    with pytest.raises(SystemExit, match="not a notebook"):
        cnb.find_notebooks([str(tmp_path / "exercises" / "notes.md")], root=tmp_path)


def test_plan_balances_the_workers_and_keeps_each_list_longest_first():
    cnb = load_script("check_notebooks")
    est = {Path(f"{k}.ipynb"): v for k, v in
           {"a": 7.0, "b": 6.0, "c": 5.0, "d": 4.0, "e": 4.0, "f": 4.0, "g": 3.0, "h": 3.0}.items()}
    plan = cnb.plan_workers(est, 2)
    loads = sorted(sum(est[p] for p in b) for b in plan)
    assert loads == [18.0, 18.0]  # total 36: a perfect split exists, and plain LPT would give 17 / 19
    assert sorted(p for b in plan for p in b) == sorted(est)  # every notebook exactly once
    for b in plan:
        assert [est[p] for p in b] == sorted((est[p] for p in b), reverse=True)
    assert cnb.plan_workers(est, 1) == [sorted(est, key=lambda p: (-est[p], str(p)))]
    assert len(cnb.plan_workers({Path("x.ipynb"): 1.0}, 4)) == 1  # no empty lists
    with pytest.raises(ValueError, match="at least one worker"):
        cnb.plan_workers(est, 0)


def test_estimates_come_from_the_history_else_the_baseline_else_the_median(tmp_path):
    cnb = load_script("check_notebooks")
    history, baseline = tmp_path / "history.json", tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"notebooks/a.ipynb": 5.0, "notebooks/b.ipynb": 9.0}))
    assert cnb.load_durations(history, baseline) == {"notebooks/a.ipynb": 5.0, "notebooks/b.ipynb": 9.0}
    history.write_text(json.dumps({"notebooks/a.ipynb": {"seconds": 6.0, "estimate": 5.5, "cells": 3}}))
    assert cnb.load_durations(history, baseline) == {"notebooks/a.ipynb": 5.5}
    history.write_text("{not json")
    assert cnb.load_durations(history, baseline)["notebooks/b.ipynb"] == 9.0
    a, b, new = (ROOT / "notebooks" / n for n in ("a.ipynb", "b.ipynb", "new.ipynb"))
    est = cnb.estimates_for([a, b, new], {"notebooks/a.ipynb": 4.0, "notebooks/b.ipynb": 8.0})
    assert est == {a: 4.0, b: 8.0, new: 6.0}
    assert cnb.estimates_for([new], {}) == {new: 1.0}


def test_the_committed_baseline_times_every_course_notebook():
    cnb = load_script("check_notebooks")
    baseline = cnb.load_durations(cnb.BASELINE)
    missing = [cnb._rel(p) for p in cnb.find_notebooks(None) if cnb._rel(p) not in baseline]
    assert not missing, f"not in {cnb._rel(cnb.BASELINE)}: {missing}; run scripts/check_notebooks.py --update-baseline"


def test_each_worker_runs_the_notebooks_planned_for_it(tmp_path):
    # One-cell notebooks: xdist hands a worker its next notebook while fewer than 3 cells are pending,
    # so each worker gets its whole list at the start, whatever the timing.
    paths = [_notebook(tmp_path / f"nb_{k}.ipynb", [(f"print({k})", f"{k}\n")]) for k in range(4)]
    plan = [[paths[3], paths[0]], [paths[1], paths[2]]]
    durations = tmp_path / "durations.json"
    env = {**os.environ, "CHECK_NOTEBOOKS_PLAN": json.dumps([[str(p) for p in b] for b in plan]),
           "CHECK_NOTEBOOKS_DURATIONS": str(durations),
           "PYTHONPATH": os.pathsep.join([str(SCRIPT.parent), os.environ.get("PYTHONPATH", "")])}
    cmd = load_script("check_notebooks").build_pytest_command(paths, workers=2)
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    workers = {Path(k).name: v["worker"] for k, v in json.loads(durations.read_text()).items()}
    assert workers == {"nb_3.ipynb": "gw0", "nb_0.ipynb": "gw0", "nb_1.ipynb": "gw1", "nb_2.ipynb": "gw1"}
    # A worker with nothing planned takes the last notebook queued (the queue is the command-line order).
    plan = [[paths[0], paths[1], paths[2], paths[3]], []]
    env["CHECK_NOTEBOOKS_PLAN"] = json.dumps([[str(p) for p in b] for b in plan])
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    workers = {Path(k).name: v["worker"] for k, v in json.loads(durations.read_text()).items()}
    assert workers["nb_3.ipynb"] == "gw1" and workers["nb_0.ipynb"] == "gw0"
    # Without a plan the plugin leaves xdist's own scheduling alone.
    del env["CHECK_NOTEBOOKS_PLAN"]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_pytest_command_keeps_notebooks_whole():
    cnb = load_script("check_notebooks")
    cmd = cnb.build_pytest_command([ROOT / "notebooks" / "x.ipynb"], workers=2)
    assert cmd[cmd.index("--dist") + 1] == "loadfile"  # nbval cells of one notebook share one kernel
    assert "--nbval" in cmd and "--nbval-lax" not in cmd
    assert "-n" not in cnb.build_pytest_command([ROOT / "notebooks" / "x.ipynb"], workers=1)


def test_passes_two_notebooks_that_import_peft_and_reports_the_numbers(tmp_path):
    for i in range(2):
        _notebook(tmp_path / f"peft_{i}.ipynb", [("import peft\nprint(hasattr(peft, 'PeftModel'))", "True\n"),
                                                 (f"print({i} + 40)", f"{i + 40}\n")])
    rc, out = _run(tmp_path, "--import-runs", "1", "--max-ratio", "1000", "--history", tmp_path / "h.json")
    assert rc == 0, out
    assert "N = 2 notebooks" in out and "c = " in out and "floor N*t/c" in out and "check_notebooks: OK" in out
    for i in range(2):  # per-notebook durations are listed
        assert f"peft_{i}.ipynb" in out
    assert "slowest cells" in out and "::Cell 0" in out
    assert (tmp_path / "h.json").is_file()  # the next run schedules longest first from it


def test_fails_on_a_changed_output(tmp_path):
    _notebook(tmp_path / "wrong.ipynb", [("print(1 + 1)", "3\n")])
    rc, out = _run(tmp_path, "--import-runs", "1", "--max-ratio", "1000", "--history", tmp_path / "h.json")
    assert rc != 0
    assert "nbval reported problems" in out and "wrong.ipynb" in out
    assert not (tmp_path / "h.json").exists()  # a failed run does not become the schedule


def test_fails_when_over_the_time_limit(tmp_path):
    _notebook(tmp_path / "ok.ipynb", [("print(2)", "2\n")])
    rc, out = _run(tmp_path, "--import-runs", "1", "--max-ratio", "0.001", "--history", tmp_path / "h.json")
    assert rc == 1, out
    assert "FAILED: the notebooks took" in out and "shorten the slowest notebooks" in out


def test_nothing_to_check(tmp_path):
    rc, out = _run(tmp_path / "missing-folder-is-an-error")
    assert rc != 0 and "not a notebook or a folder" in out
    (tmp_path / "empty").mkdir()
    rc, out = _run(tmp_path / "empty")
    assert rc == 0 and "no notebooks found" in out


def test_quick_kernel_runs_code_and_is_reaped_after_stop():
    import nbval.kernel

    cnb = load_script("check_notebooks")
    kernel = cnb._quick_kernel_class(nbval.kernel)("python3", startup_timeout=60)
    try:
        assert isinstance(kernel, nbval.kernel.RunningKernel)
        msg_id = kernel.execute_cell_input("import os; os.getpid()", allow_stdin=False)
        kernel.await_reply(msg_id, timeout=60)
        results = []
        while True:  # the IOPub messages of that execution, up to its "idle"
            msg = kernel.get_message(stream="iopub", timeout=60)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "execute_result":
                results.append(msg["content"]["data"]["text/plain"])
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        pid = kernel.km.provisioner.process.pid
        assert results == [str(pid)]
    finally:
        kernel.stop()
    for thread in cnb._reapers:
        thread.join(timeout=30)
    assert not kernel.is_alive()
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left as a zombie
        os.kill(pid, 0)
