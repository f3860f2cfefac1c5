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


def test_setup_notebook_quiets_libraries():
    import transformers

    setup_notebook()
    assert not transformers.utils.logging.is_progress_bar_enabled()
    assert transformers.logging.get_verbosity() == transformers.logging.ERROR
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        setup_notebook()  # re-installs the filters after simplefilter reset them
        warnings.warn("fan_in_fan_out is set to False but the target module is `Conv1D`.", UserWarning)
    assert caught == []
