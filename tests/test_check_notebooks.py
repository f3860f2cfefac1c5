"""scripts/check_notebooks.py (`make check-notebooks`) on tiny generated notebooks; no timing is asserted."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "check_notebooks.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("check_notebooks_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    cnb = _load_script()
    floor, ratio, ok = cnb.verdict(n=10, t=4.0, cores=2, wall=24.0, max_ratio=1.25)
    assert floor == 20.0 and ratio == pytest.approx(1.2) and ok
    assert not cnb.verdict(10, 4.0, 2, 25.1, 1.25)[2]
    with pytest.raises(ValueError, match="at least one notebook"):
        cnb.verdict(0, 4.0, 2, 1.0, 1.25)


def test_find_notebooks_defaults_and_errors(tmp_path):
    cnb = _load_script()
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


def test_longest_first_uses_history_then_size(tmp_path):
    cnb = _load_script()
    small, big, slow, fast = (tmp_path / f"{n}.ipynb" for n in ("small", "big", "slow", "fast"))
    small.write_text("x")
    big.write_text("x" * 100)
    slow.write_text("x")
    fast.write_text("x" * 1000)
    history = {str(slow): 30.0, str(fast): 5.0}
    assert cnb.longest_first([fast, small, slow, big], history) == [big, small, slow, fast]


def test_pytest_command_keeps_notebooks_whole():
    cnb = _load_script()
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
