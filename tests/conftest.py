import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _quiet():
    from course_utils.lesson_setup import quiet_libraries

    quiet_libraries()


@pytest.fixture(scope="session")
def tokenizer():
    from course_utils import load_tokenizer

    return load_tokenizer()


@pytest.fixture()
def base_model():
    from course_utils import load_base_model

    return load_base_model()
