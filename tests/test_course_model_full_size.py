"""Every lesson runs top to bottom with COURSE_MODEL pointing at a full-size (124M) GPT-2 architecture.

Slow (several minutes per lesson on a laptop CPU), so not in the default run: ``pytest -m slow
tests/test_course_model_full_size.py``. Outputs differ from the stored ones (random 124M weights,
briefly trained adapters), so nbval runs in lax mode: every cell must run without an unexpected error.
The folder is built once into ``~/.cache/peft-course`` (``course_utils.maintenance.full_size``).
"""
import subprocess
import sys
from pathlib import Path

import pytest

from course_utils.maintenance.notebook_env import notebook_environ

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="module")
def full_size_folder():
    from course_utils.maintenance.full_size import full_size_gpt2_folder

    return full_size_gpt2_folder()


def test_lessons_are_found():
    assert len(LESSONS) >= 5


@pytest.mark.slow
@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs_on_full_size_gpt2(lesson, full_size_folder):
    env = {**notebook_environ(), "COURSE_MODEL": str(full_size_folder)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q", str(lesson)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, f"{lesson.name} failed under COURSE_MODEL={full_size_folder}:\n{proc.stdout[-6000:]}"
    assert " passed" in proc.stdout and " failed" not in proc.stdout
