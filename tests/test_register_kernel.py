"""scripts/register_kernel.py: the per-user kernel follows one copy of the course, never silently another."""
import json
import os
import subprocess
import sys
from pathlib import Path

from script_loader import load_script

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "register_kernel.py"


def _run(data_dir: Path, *args):
    env = {**os.environ, "JUPYTER_DATA_DIR": str(data_dir)}
    run = subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True)
    return run.returncode, run.stdout + run.stderr


def _spec(data_dir: Path) -> Path:
    return data_dir / "kernels" / "peft-course" / "kernel.json"


def test_decide(tmp_path):
    rk = load_script("register_kernel")
    alive = tmp_path / "python"
    alive.write_text("")
    assert rk.decide(None, "/me/python") == "register"
    assert rk.decide("/me/python", "/me/python") == "register"
    assert rk.decide(str(tmp_path / "deleted-clone" / "python"), "/me/python") == "register"
    assert rk.decide(str(alive), "/me/python") == "keep"


def test_registers_then_keeps_another_live_copy_then_replaces_a_dead_one(tmp_path):
    rc, out = _run(tmp_path)
    assert rc == 0 and "registered" in out, out
    assert json.loads(_spec(tmp_path).read_text())["argv"][0] == sys.executable

    other = tmp_path / "other-clone-python"
    other.write_text("")
    spec = json.loads(_spec(tmp_path).read_text())
    spec["argv"][0] = str(other)
    _spec(tmp_path).write_text(json.dumps(spec))
    rc, out = _run(tmp_path)
    assert rc == 0 and "kept it" in out and "ipykernel install --user --name peft-course" in out, out
    assert json.loads(_spec(tmp_path).read_text())["argv"][0] == str(other)  # not taken over
    rc, out = _run(tmp_path, "--quiet")
    assert rc == 0 and out == ""

    other.unlink()  # that copy was deleted: its kernel cannot start, so this one takes the name
    rc, out = _run(tmp_path, "--quiet")
    assert rc == 0 and "registered" in out
    assert json.loads(_spec(tmp_path).read_text())["argv"][0] == sys.executable
