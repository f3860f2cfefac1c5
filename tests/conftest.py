import os

import pytest


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


@pytest.fixture(scope="session")
def requires_sandbox():
    """Tests that grade through the CLI need this host's sandbox: without one they skip, saying why, on a
    developer's machine, and fail under CI=true (``.ci/run`` installs bubblewrap)."""
    from course_utils.grading.sandbox import make_sandbox

    refused = make_sandbox().refusal()
    if refused:
        in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
        (pytest.fail if in_ci else pytest.skip)(refused)
