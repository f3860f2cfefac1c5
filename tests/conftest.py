import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _quiet():
    from course_utils.notebook import quiet_libraries

    quiet_libraries()


@pytest.fixture(scope="session")
def tokenizer():
    from course_utils import load_tokenizer

    return load_tokenizer()


@pytest.fixture()
def base_model():
    from course_utils import load_base_model

    return load_base_model()


def load_script(name: str):
    """Import ``scripts/<name>.py`` as a fresh module (the scripts are files, not a package)."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
