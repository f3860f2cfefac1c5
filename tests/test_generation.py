import pytest

from course_utils import tasks
from course_utils.generation import complete, task_accuracy


def test_complete_str_and_list(base_model, tokenizer):
    one = complete(base_model, tokenizer, "The morning was", max_new_tokens=5)
    many = complete(base_model, tokenizer, ["The morning was", "La comida"], max_new_tokens=5)
    assert isinstance(one, str) and isinstance(many, list) and len(many) == 2
    assert many[0] == one  # left padding does not change a greedy continuation
    assert "\n" not in one


def test_base_model_writes_text_like_continuations(base_model, tokenizer):
    text = complete(base_model, tokenizer, "The children played", max_new_tokens=8)
    words = text.split()
    assert len(words) >= 3 and all(w.isprintable() for w in words)


def test_task_accuracy_of_base_is_low_and_empty_raises(base_model, tokenizer):
    _, test = tasks.task_splits("spanish_sentiment", 10, 20)
    assert task_accuracy(base_model, tokenizer, test) < 0.5
    with pytest.raises(ValueError):
        task_accuracy(base_model, tokenizer, [])


def test_complete_leaves_the_tokenizer_alone(base_model, tokenizer):
    side = tokenizer.padding_side
    complete(base_model, tokenizer, ["The morning was", "La comida fue muy buena"], max_new_tokens=3)
    assert tokenizer.padding_side == side == "right"


def test_complete_pads_on_the_left(base_model, tokenizer):
    # A right-padded short prompt would continue after its padding and differ from its unbatched answer.
    alone = complete(base_model, tokenizer, "La comida", max_new_tokens=6)
    batched = complete(base_model, tokenizer, ["La comida", "The morning was cold and the streets were"],
                       max_new_tokens=6)
    assert batched[0] == alone


def test_complete_without_pad_token_is_one_clear_error(base_model, tokenizer):
    import copy

    no_pad = copy.deepcopy(tokenizer)
    no_pad.pad_token = None
    with pytest.raises(ValueError, match="no pad token"):
        complete(base_model, no_pad, ["a", "b c"], max_new_tokens=2)
