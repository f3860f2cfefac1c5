"""The package stands alone: a wheel built from the repository, installed into a fresh folder and used from
another directory, runs the doctor and the lesson helpers (the benchmark table included) without the checkout."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from course_utils.maintenance.notebook_env import notebook_environ

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(folder the wheel was installed into, a working directory far from the checkout)."""
    base = tmp_path_factory.mktemp("wheel")
    dist, target, elsewhere, source = base / "dist", base / "site", base / "elsewhere", base / "source"
    elsewhere.mkdir()
    # Build from a copy of the tracked files: the build writes build/ and *.egg-info into its source tree.
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    for rel in filter(None, tracked.decode().split("\0")):
        if (ROOT / rel).is_file():
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, source / rel)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "--wheel-dir", str(dist), str(source)], check=True, capture_output=True, text=True)
    # setuptools warns of folders it would leave out (pyproject.toml lists every package through `find`).
    assert "Warning" not in build.stdout + build.stderr, build.stdout + build.stderr
    wheel = next(dist.glob("peft_adapter_course-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "course_utils/data/bench_results.json" in names
    assert any(n.startswith("course_utils/assets/tiny-gpt2/") for n in names)
    assert any(n.startswith("course_utils/assets/tiny-llama/") for n in names)
    assert "course_utils/grading/grader.py" in names and "course_utils/maintenance/bench.py" in names
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, capture_output=True)
    return target, elsewhere


def _run(installed, code: list[str]):
    target, elsewhere = installed
    env = {**notebook_environ(), "PYTHONPATH": str(target)}
    env.pop("COURSE_MODEL", None)
    return subprocess.run([sys.executable, *code], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_installed_copy_is_the_one_used(installed):
    run = _run(installed, ["-c", "import course_utils; print(course_utils.__file__)"])
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().startswith(str(installed[0])), run.stdout


def test_doctor_runs_from_the_wheel(installed):
    run = _run(installed, ["-m", "course_utils", "doctor", "--quiet"])
    assert run.returncode == 0, run.stdout + run.stderr
    assert str(ROOT) not in run.stdout


def test_lesson_helpers_run_from_the_wheel(installed):
    code = """
from course_utils import bench_table, compare_logits, list_files, load_base_model, load_tokenizer, shipped_adapter
print(bench_table(operations=["set_adapter"], sizes=[(8, "c_attn")]))
tok, base = load_tokenizer(), load_base_model()
print(sorted(list_files(shipped_adapter("english_ner"))))
print(compare_logits(base, load_base_model(), tok))
"""
    run = _run(installed, ["-c", code])
    assert run.returncode == 0, run.stderr
    assert "set_adapter" in run.stdout and "r=8 c_attn" in run.stdout
    assert "adapter_model.safetensors" in run.stdout


def test_exercise_self_checks_run_from_the_wheel(installed):
    """A learner who installed the course from a wheel runs the exercises' check cells: the judges come along."""
    code = """
from peft import LoraConfig
from course_utils.grading.checks import CheckFailed, check
from course_utils.grading.questions.ex03 import tutorial_config
from course_utils.learner import learner_name
t = tutorial_config(learner_name())
check("ex03_q2", config=LoraConfig(r=t.r, lora_alpha=t.lora_alpha, target_modules=["c_attn"]))
try:
    check("ex03_q2", config=LoraConfig(r=t.r + 1, lora_alpha=t.lora_alpha, target_modules=["c_attn"]))
except CheckFailed as failed:
    print(failed)
"""
    run = _run(installed, ["-c", code])
    assert run.returncode == 0, run.stderr
    wrong_rank = "✗ ex03_q2: 4 of the 4 LoRA layers have a rank other than the tutorial's"
    assert "✓ ex03_q2" in run.stdout and wrong_rank in run.stdout, run.stdout
