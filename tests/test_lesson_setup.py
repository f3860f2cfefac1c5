import warnings

import pytest
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


def _caught(**setup_kwargs) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        setup_notebook(**setup_kwargs)
        warnings.warn("fan_in_fan_out is set to False but the target module is `Conv1D`.", UserWarning, stacklevel=1)
        warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed", FutureWarning, stacklevel=1)
        warnings.warn("Already found a `peft_config` attribute in the model.", UserWarning, stacklevel=1)
    return [str(w.message) for w in caught]


def test_setup_notebook_hides_only_what_lesson_1_explains():
    import logging

    import transformers

    from course_utils.lesson_setup import NOISY_WARNINGS

    transformers.logging.set_verbosity_warning()
    logging.getLogger("peft").setLevel(logging.WARNING)
    assert len(_caught(show_explained=True)) == 3  # lesson 1: every message shown
    shown = _caught()
    assert shown == ["Already found a `peft_config` attribute in the model."]  # only the explained two hidden
    log = logging.getLogger("transformers.modeling_utils")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    log.addHandler(handler)
    try:
        log.warning("`loss_type=None` was set in the config but it is unrecognized. Using the default loss")
        log.warning("something else transformers says")
    finally:
        log.removeHandler(handler)
    assert [r.getMessage() for r in records] == ["something else transformers says"]
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


@pytest.mark.parametrize("show_explained", [False, True])
def test_setup_notebook_hides_only_bitsandbytes_missing_kernel_log(show_explained):
    """peft imports bitsandbytes (lesson 11) when installed; its missing-`kernels` log, printed only on CPUs with
    AVX512-BF16, would make every stored output depend on the CPU: dropped, lesson 1 included."""
    import logging

    from course_utils.lesson_setup import BITSANDBYTES_KERNEL_LOG

    log = logging.getLogger(BITSANDBYTES_KERNEL_LOG[0])
    log.filters.clear()
    setup_notebook(show_explained=show_explained)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    log.addHandler(handler)
    try:
        log.warning("Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'.")
        log.warning("something else bitsandbytes says")
    finally:
        log.removeHandler(handler)
    assert [r.getMessage() for r in records] == ["something else bitsandbytes says"]
