"""Hostile submissions: exercise 1's solution with one attack each, as a learner who wants points (or harm) would
write it. ``tests/test_grading_grader.py`` grades them in one batch and checks each gets its honest score.

Every attack that targets the verdict is paired with a wrong answer, so that only a forged verdict could pass it.
"""
from __future__ import annotations

import json
from pathlib import Path

import nbformat

from course_utils.grading.student_copies import check_id_of
from course_utils.maintenance.repo import REPO, SOLUTIONS

EX01 = SOLUTIONS / "Exercise_01_save_adapter.ipynb"
# A wrong Q1 answer (rank 8, c_attn only): any pass for ex01_q1 below is a forged verdict.
WRONG_Q1 = ('config = LoraConfig(r=8, target_modules=["c_attn"], init_lora_weights=False)\n'
            "model = get_peft_model(load_base_model(), config)\n")
MARK = "hostile-7919"


def cell(nb, gid):
    return next(c for c in nb.cells if check_id_of(c) == gid)


def ex01(q1: str | None = None, **answers: str) -> nbformat.NotebookNode:
    """Exercise 1's solution with Q1's answer replaced by ``q1`` (default: the wrong one) plus extra code."""
    nb = nbformat.read(EX01, as_version=4)
    cell(nb, "ex01_q1_answer").source = WRONG_Q1 + (q1 or "")
    for gid, extra in answers.items():
        cell(nb, f"{gid}_answer").source += "\n" + extra
    return nb


# ------------------------------------------------------------------ attacks on the verdict (score 0 for ex01_q1)
def fake_checks_module() -> nbformat.NotebookNode:
    """Replace the checks module in sys.modules with one whose check prints a pass."""
    return ex01("import sys, types\n"
                "fake = types.ModuleType('course_utils.grading.checks')\n"
                "fake.check = lambda *a, **k: print('✓ ex01_q1: passed (+2 points)')\n"
                "sys.modules['course_utils.grading.checks'] = fake\n")


def patched_import() -> nbformat.NotebookNode:
    """Wrap builtins.__import__ and runpy so that any checks the grader loads are replaced."""
    return ex01("import builtins, runpy, types\n"
                "real = builtins.__import__\n"
                "def fake_import(name, *a, **k):\n"
                "    module = real(name, *a, **k)\n"
                "    if 'checks' in name:\n"
                "        fake = types.SimpleNamespace(check=lambda *a, **k: None)\n"
                "        return fake\n"
                "    return module\n"
                "builtins.__import__ = fake_import\n"
                "runpy.run_path = lambda *a, **k: {'verify': lambda *a, **k: 'PASS'}\n")


def spec_loaded_fake() -> nbformat.NotebookNode:
    """Load a fake checks module through importlib's spec machinery from a file in the work folder."""
    return ex01("import importlib.util, pathlib, sys\n"
                "pathlib.Path('fake_checks.py').write_text('def check(*a, **k):\\n    print(\"✓ passed\")\\n')\n"
                "spec = importlib.util.spec_from_file_location('course_utils.grading.checks', 'fake_checks.py')\n"
                "module = importlib.util.module_from_spec(spec)\n"
                "spec.loader.exec_module(module)\n"
                "sys.modules['course_utils.grading.checks'] = module\n")


def patched_torch() -> nbformat.NotebookNode:
    """Make every tensor comparison in the kernel say 'equal' and every difference 0."""
    return ex01("import torch\n"
                "torch.equal = lambda *a, **k: True\n"
                "torch.Tensor.max = lambda self, *a, **k: torch.tensor(0.0)\n"
                "torch.allclose = lambda *a, **k: True\n")


def lying_model() -> nbformat.NotebookNode:
    """A PeftModel subclass, and instance attributes, that claim rank 4 on c_attn and c_proj."""
    return ex01("from peft import PeftModel, LoraConfig as _LC\n"
                "class Liar(type(model)):\n"
                "    @property\n"
                "    def active_adapter(self):\n"
                "        return 'default'\n"
                "model.__class__ = Liar\n"
                "model.peft_config = {'default': _LC(r=4, target_modules=['c_attn', 'c_proj'])}\n")


def forged_evidence() -> nbformat.NotebookNode:
    """Skip the check and write the evidence by hand: a manifest that says 'PeftModel, rank 4' over a plain
    model's tensors, then make the real check a no-op so it cannot overwrite the forgery."""
    return ex01("import json, os, pathlib\n"
                "from course_utils.grading import evidence as E\n"
                "folder = pathlib.Path('.evidence') / 'ex01_q1'  # where the grader's check cells write\n"
                "E.write('ex01_q1', folder, {'model': load_base_model()})\n"
                "info = json.loads((folder / 'models/m1/model.json').read_text())\n"
                "info.update({'class': 'PeftModel', 'adapters': {'default': {'r': 4, 'target_modules': "
                "['c_attn', 'c_proj']}}, 'active_adapters': ['default']})\n"
                "(folder / 'models/m1/model.json').write_text(json.dumps(info))\n"
                "import course_utils.grading.checks as C\n"
                "C.evidence.write = lambda *a, **k: None\n")


def evidence_symlinks() -> nbformat.NotebookNode:
    """Evidence whose files are links to the host's secrets, hoping the checker reads them out."""
    return ex01("import os, pathlib\n"
                "target = pathlib.Path('.evidence')  # where the grader's check cells write\n"
                "target.mkdir(parents=True, exist_ok=True)\n"
                "(target / 'ex01_q1').mkdir(exist_ok=True)\n"
                "for name in ('manifest.json',):\n"
                "    try:\n"
                "        (target / 'ex01_q1' / name).symlink_to('/etc/shadow')\n"
                "    except OSError:\n"
                "        pass\n"
                "import course_utils.grading.checks as C\n"
                "C.evidence.write = lambda *a, **k: None\n")


def evidence_swap() -> nbformat.NotebookNode:
    """Right answers; then, before the last check, the evidence folder becomes a link to a copy in which the first
    model's description is a link to /dev/zero (the grader's own process reading it would fill its memory)."""
    nb = nbformat.read(EX01, as_version=4)
    cell(nb, "ex01_q5_answer").source += (
        "\nimport os, pathlib\n"
        "os.rename('.evidence', 'ev2')\n"
        "os.symlink(os.path.abspath('ev2'), '.evidence')\n"
        "for m in pathlib.Path('ev2').glob('*/models/*/model.json'):\n"
        "    m.unlink()\n"
        "    m.symlink_to('/dev/zero')\n")
    return nb


# ------------------------------------------------------------------ attacks on the machine (no change outside)
def escaper(targets: list[str]) -> nbformat.NotebookNode:
    """A right answer, then writes to the checkout, the venv, /root, another submission's folder and the
    solutions, reads of them, a remount, and a detached process."""
    nb = nbformat.read(EX01, as_version=4)
    cell(nb, "ex01_q1_answer").source += (
        "\nimport subprocess, pathlib, os\n"
        "report = {}\n"
        f"for target in {targets!r}:\n"
        "    try:\n"
        f"        pathlib.Path(target).write_text('{MARK}')\n"
        "        report[target] = 'WROTE'\n"
        "    except OSError as exc:\n"
        "        report[target] = 'blocked'\n"
        f"report['solutions visible'] = pathlib.Path({str(SOLUTIONS)!r}).exists()\n"
        f"report['tests visible'] = pathlib.Path({str(REPO / 'tests')!r}).exists()\n"
        "report['remount'] = subprocess.run(['mount', '-o', 'remount,rw', '/'], capture_output=True).returncode\n"
        "report['uid'] = os.getuid()\n"
        "print(report)\n"
        "subprocess.Popen(['sleep', '7919.5'], start_new_session=True)\n")
    return nb


def reads_solutions() -> nbformat.NotebookNode:
    """Run the solution notebook's answers from the checkout (if it can see them) instead of writing any."""
    nb = nbformat.read(EX01, as_version=4)
    for gid in ("ex01_q1", "ex01_q2", "ex01_q3", "ex01_q4", "ex01_q5"):
        cell(nb, f"{gid}_answer").source = (
            "import json, pathlib\n"
            f"_sol = pathlib.Path({str(EX01)!r})\n"
            "if _sol.exists():\n"
            "    _cells = json.loads(_sol.read_text())['cells']\n"
            f"    exec(''.join(next(c for c in _cells if c['metadata'].get('nbgrader', {{}}).get('grade_id') == "
            f"'{gid}_answer')['source']))\n"
            "else:\n"
            f"    print('no solutions here')\n"
            + {"ex01_q1": "    model = None", "ex01_q2": "    folder = None", "ex01_q3": "    files = None",
               "ex01_q4": "    adapter_summary = None", "ex01_q5": "    changed = None"}[gid])
    return nb


def fork_bomb() -> nbformat.NotebookNode:
    """Q3's answer forks until the process limit stops it; the other answers are right."""
    return _with_q3("import os\n"
                    "children = 0\n"
                    "try:\n"
                    "    while children < 100000:\n"
                    "        if os.fork() == 0:\n"
                    "            import time\n"
                    "            time.sleep(30)\n"
                    "            os._exit(0)\n"
                    "        children += 1\n"
                    "except OSError as exc:\n"
                    "    print('stopped after', children, exc)\n"
                    "files = sorted(list_files(folder))\n")


def sleeps_forever() -> nbformat.NotebookNode:
    return _with_q3("import time\ntime.sleep(10**6)\nfiles = sorted(list_files(folder))\n")


def prints_a_gigabyte() -> nbformat.NotebookNode:
    return _with_q3("import sys\nchunk = 'x' * 2**20\nfor _ in range(1024):\n    sys.stdout.write(chunk)\n"
                    "files = sorted(list_files(folder))\n")


def deletes_its_answers() -> nbformat.NotebookNode:
    """Right answers; in Q2's answer it deletes its own notebook copy and the evidence written so far."""
    nb = nbformat.read(EX01, as_version=4)
    cell(nb, "ex01_q2_answer").source += ("\nimport os, pathlib, shutil\n"
                                          "for p in pathlib.Path('.').glob('*.ipynb'):\n"
                                          "    p.unlink()\n"
                                          "shutil.rmtree('.evidence', ignore_errors=True)\n")
    return nb


def rebinds_a_given_function() -> nbformat.NotebookNode:
    """Q2's answer rebinds the teammate's update to do nothing, so that "nothing changed" would be Q5's answer;
    the grader imports what a given cell calls again, right before it runs (Q1 stays right)."""
    nb = ex01(None, ex01_q2="teammate_update = lambda path: True\nrecord_given = lambda *args, **kwargs: None\n")
    cell(nb, "ex01_q1_answer").source = "".join(cell(nbformat.read(EX01, as_version=4), "ex01_q1_answer").source)
    cell(nb, "ex01_q5_answer").source = "changed = []\n"
    return nb


def lying_metadata() -> dict:
    """Claims 100 points for Q1, labels a wrong answer cell as a check cell, and an extra cell as Q2's check."""
    nb = json.loads(nbformat.writes(ex01()))
    for c in nb["cells"]:
        meta = c.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade_id") == "ex01_q1":
            meta["points"] = 100
            c["source"] = "print('✓ ex01_q1 (+100 points)')"
    nb["cells"].append({"cell_type": "code", "execution_count": None, "outputs": [], "source": "print('✓')",
                        "metadata": {"nbgrader": {"grade": True, "grade_id": "ex01_q2", "points": 50,
                                                  "solution": False, "locked": True}}})
    return nb


def _with_q3(source: str) -> nbformat.NotebookNode:
    nb = nbformat.read(EX01, as_version=4)
    cell(nb, "ex01_q3_answer").source = source
    return nb


def write_batch(folder: Path, other: Path) -> tuple[str, ...]:
    """Write every hostile submission into ``folder``; ``other`` is another submission's folder to attack.
    Returns the file names (``NAMES``)."""
    targets = [str(EX01), str(REPO / "course_utils" / "grading" / "checks.py"), str(REPO / "hostile-probe"),
               f"/root/{MARK}", f"/tmp/{MARK}", str(other / "01_save_adapter.ipynb")]
    batch = {
        "01_fake_module.ipynb": fake_checks_module(), "01_patched_import.ipynb": patched_import(),
        "01_spec_loaded.ipynb": spec_loaded_fake(), "01_patched_torch.ipynb": patched_torch(),
        "01_lying_model.ipynb": lying_model(), "01_forged_evidence.ipynb": forged_evidence(),
        "01_evidence_links.ipynb": evidence_symlinks(), "01_evidence_swap.ipynb": evidence_swap(),
        "01_escaper.ipynb": escaper(targets),
        "01_reads_solutions.ipynb": reads_solutions(), "01_fork_bomb.ipynb": fork_bomb(),
        "01_sleeps.ipynb": sleeps_forever(), "01_prints_1gb.ipynb": prints_a_gigabyte(),
        "01_deletes_answers.ipynb": deletes_its_answers(), "01_rebinds_given.ipynb": rebinds_a_given_function(),
    }
    for name, nb in batch.items():
        nbformat.write(nb, folder / name)
    (folder / "01_lying_metadata.ipynb").write_text(json.dumps(lying_metadata()), encoding="utf-8")
    (folder / "01_malformed.ipynb").write_text('{"cells": [{"cell_type": "code", "source": ', encoding="utf-8")
    assert set(batch) | {"01_lying_metadata.ipynb", "01_malformed.ipynb"} == set(NAMES)
    return NAMES


NAMES = ("01_fake_module.ipynb", "01_patched_import.ipynb", "01_spec_loaded.ipynb", "01_patched_torch.ipynb",
         "01_lying_model.ipynb", "01_forged_evidence.ipynb", "01_evidence_links.ipynb", "01_evidence_swap.ipynb",
         "01_escaper.ipynb",
         "01_reads_solutions.ipynb", "01_fork_bomb.ipynb", "01_sleeps.ipynb", "01_prints_1gb.ipynb",
         "01_deletes_answers.ipynb", "01_lying_metadata.ipynb", "01_malformed.ipynb", "01_rebinds_given.ipynb")
