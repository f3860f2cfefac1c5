import warnings

import torch

from course_utils.lesson_setup import seed_everything, setup_notebook


def test_setup_notebook_seeds_everything():
    setup_notebook(seed=3)
    a = torch.rand(3)
    setup_notebook(seed=3)
    assert torch.equal(a, torch.rand(3))
    setup_notebook(seed=4)
    assert not torch.equal(a, torch.rand(3))


def test_seed_everything_python_random():
    import random

    seed_everything(7)
    x = random.random()
    seed_everything(7)
    assert random.random() == x


def test_setup_notebook_leaves_library_warnings_visible():
    import logging

    import transformers

    from course_utils.lesson_setup import NOISY_WARNINGS

    transformers.logging.set_verbosity_warning()
    logging.getLogger("peft").setLevel(logging.WARNING)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        setup_notebook()
        warnings.warn("fan_in_fan_out is set to False but the target module is `Conv1D`.", UserWarning, stacklevel=1)
        warnings.warn("Already found a `peft_config` attribute in the model.", UserWarning, stacklevel=1)
    assert len(caught) == 2  # nothing filtered globally: the lessons show what a learner will meet
    assert transformers.logging.get_verbosity() == transformers.logging.WARNING
    assert logging.getLogger("peft").level == logging.WARNING
    assert not transformers.utils.logging.is_progress_bar_enabled()  # progress bars (timings) stay off
    assert NOISY_WARNINGS  # still there for the command-line tools' quiet_libraries()


def test_warnings_print_on_one_line_without_the_install_path():
    from course_utils.lesson_setup import short_warning

    text = short_warning("careful", UserWarning, "/home/x/.venv/lib/python3.11/site-packages/peft/tuners/a.py", 7)
    assert text == "UserWarning: careful  [peft/tuners/a.py:7]\n"
    setup_notebook()
    assert warnings.formatwarning is short_warning
