"""Every exercise check: the solution passes, the untouched stub fails, and plausible wrong answers fail
with feedback that says what is wrong. Real objects built from the shipped tiny model."""
from __future__ import annotations

import pytest
import torch
from check_assertions import fails
from peft import LoraConfig, PeftModel, get_peft_model

from course_utils import (
    load_base_model,
    load_tokenizer,
)
from course_utils.grading.checks import (
    CHECKS,
    CheckFailed,
    check,
    given_adapter,
    stub_message,
)
from course_utils.maintenance.repo import REPO


def lora(r=8, targets=("c_attn", "c_fc"), init=False, name="default", seed=0):
    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(targets), init_lora_weights=init)
    return get_peft_model(load_base_model(), config, adapter_name=name)


def reload(folder, **kwargs):
    return PeftModel.from_pretrained(load_base_model(), str(folder), **kwargs)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A trained-looking adapter and the folder it was saved to (exercises 2 and 4 give the learner this)."""
    folder = tmp_path_factory.mktemp("saved") / "adapter"
    return given_adapter(folder, targets=("c_attn", "c_fc")), folder


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


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
