"""scripts/register_kernel.py and the one kernel name: notebooks, ``make lab`` and the venv all say the same."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from script_loader import load_script

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "register_kernel.py"
rk = load_script("register_kernel")
NOTEBOOKS = sorted([*ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("exercises/*.ipynb"),
                    *ROOT.glob("exercises/solutions/*.ipynb")])


def _run(prefix: Path, *args):
    env = {**os.environ, "JUPYTER_DATA_DIR": str(prefix / "user-data")}
    run = subprocess.run([sys.executable, str(SCRIPT), "--prefix", str(prefix), *args], env=env,
                         capture_output=True, text=True)
    return run.returncode, run.stdout + run.stderr


def make_lab_kernels() -> list[str]:
    """The kernels ``make lab`` allows, read from its command line (``make -n``)."""
    dry = subprocess.run(["make", "-n", "lab", "VENV=/nonexistent-venv"], cwd=ROOT, capture_output=True, text=True)
    found = re.findall(r"--KernelSpecManager\.allowed_kernelspecs=(\S+)", dry.stdout)
    assert len(found) == 1, f"make lab names no single allowed kernel list: {dry.stdout}{dry.stderr}"
    return found[0].strip("'\"").split(",")


def test_make_lab_allows_exactly_the_registered_kernel():
    assert make_lab_kernels() == [rk.NAME] == ["python3"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_notebook_names_the_kernel_make_lab_allows(path):
    spec = json.loads(path.read_text())["metadata"].get("kernelspec", {})
    assert spec.get("name") == rk.NAME, f"{path.relative_to(ROOT)} names kernel {spec.get('name')!r}, not {rk.NAME!r}"


def test_there_are_notebooks_to_check():
    assert len(NOTEBOOKS) >= 3


def test_starts():
    assert rk.starts("python", "/v/bin/python") and rk.starts("python3", "/v/bin/python")  # ipykernel's own spec
    assert rk.starts("/v/bin/python", "/v/bin/python")
    assert not rk.starts("/other/bin/python", "/v/bin/python")
    assert not rk.starts(None, "/v/bin/python")


def test_writes_a_missing_or_foreign_spec_and_keeps_a_right_one(tmp_path):
    spec = rk.venv_kernel_spec(str(tmp_path))
    rc, out = _run(tmp_path, "--quiet")
    assert rc == 0 and "written" in out, out
    data = json.loads(spec.read_text())
    assert data["argv"][0] == sys.executable and data["display_name"] == rk.DISPLAY_NAME

    rc, out = _run(tmp_path, "--quiet")
    assert rc == 0 and out == "", out  # already right: nothing to say
    rc, out = _run(tmp_path)
    assert rc == 0 and "starts this venv's python" in out

    data["argv"][0] = "/another/checkout/.venv/bin/python"  # copied from another venv
    spec.write_text(json.dumps(data))
    rc, out = _run(tmp_path, "--quiet")
    assert rc == 0 and "written" in out
    assert json.loads(spec.read_text())["argv"][0] == sys.executable
    assert not (tmp_path / "user-data" / "kernels").exists()  # nothing per user


def test_the_venvs_python3_is_the_one_jupyter_starts():
    """In this venv, Jupyter's ``python3`` is the venv's (ipykernel's spec, or the one the script wrote)."""
    winner = rk.winning_spec()
    assert winner is not None and rk.starts(rk.registered_python(winner), sys.executable), winner
