"""What every exercise check shares: the registry matches the solution notebooks, an untouched stub fails with its
stored line, unknown checks and broken objects give one line, and a check leaves the kernel's logging as it was.
Each exercise's right and wrong answers are in ``test_checks_exNN.py``."""
from __future__ import annotations

import pytest
from check_assertions import fails

from course_utils.grading.checks import (
    CHECKS,
    CheckFailed,
    check,
    stub_message,
)
from course_utils.maintenance.repo import REPO


def test_registry_matches_the_solution_notebooks():
    import nbformat

    from course_utils.grading.student_copies import (
        check_id_of,
        is_check,
        nbgrader_meta,
        solution_paths,
    )

    found = {}
    for path in solution_paths():
        for cell in nbformat.read(path, as_version=4).cells:
            if is_check(cell):
                found[check_id_of(cell)] = nbgrader_meta(cell)["points"]
    assert found == {k: c.points for k, c in CHECKS.items()}


@pytest.mark.parametrize("check_id", sorted(CHECKS))
def test_untouched_stub_fails_with_the_stored_message(check_id):
    spec = CHECKS[check_id]
    kwargs = {name: None for name in spec.answers}
    with pytest.raises(CheckFailed) as info:
        check(check_id, **kwargs)
    assert str(info.value) == stub_message(check_id)
    assert info.value._render_traceback_() == [stub_message(check_id)]


def test_unknown_check_and_missing_argument():
    fails("ex99_q1", "no such check")
    fails("ex01_q1", r"pass your answer as model=")


def test_object_that_breaks_a_check_gives_one_line():
    adapters = str(REPO / "course_utils" / "assets" / "adapters")
    fails("ex01_q3", "should be a list", files="README.md", folder=adapters)
    fails("ex02_q1", "not a PeftModel", reloaded="model", folder=adapters, reference=None)


# ---------------------------------------------------------------------------------------- exercise 1


def test_a_check_leaves_logging_and_warning_filters_as_it_found_them():
    import logging
    import warnings

    import transformers

    loggers = [logging.getLogger(n) for n in ("transformers", "peft", "accelerate", "torch")]
    original = (transformers.logging.get_verbosity(), loggers[1].level)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.filterwarnings("error", message="a learner's own filter")
        transformers.logging.set_verbosity_info()
        loggers[1].setLevel(logging.DEBUG)
        before = (list(warnings.filters), transformers.logging.get_verbosity(), [lg.level for lg in loggers])
        with pytest.raises(CheckFailed):
            check("ex01_q4", n_tensors=-1, folder="missing-folder")
        check_result = (list(warnings.filters), transformers.logging.get_verbosity(), [lg.level for lg in loggers])
        transformers.logging.set_verbosity(original[0])
        loggers[1].setLevel(original[1])
    assert check_result == before
