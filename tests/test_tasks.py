import pytest

from course_utils import tasks


@pytest.mark.parametrize("task", ["spanish_sentiment", "english_ner"])
def test_splits_are_disjoint_and_deterministic(task):
    train, test = tasks.task_splits(task, 300, 50)
    assert len(train) == 300 and len(test) == 50
    assert not {e.prompt for e in train} & {e.prompt for e in test}
    assert tasks.task_splits(task, 300, 50) == (train, test)


def test_sentiment_labels():
    train, _ = tasks.task_splits("spanish_sentiment", 200, 10)
    assert {e.answer for e in train} == {" positivo", " negativo"}
    assert all(e.prompt.startswith("Reseña: ") and e.prompt.endswith("\nSentimiento:") for e in train)


def test_ner_answers_tag_every_entity_in_order():
    train, _ = tasks.task_splits("english_ner", 200, 10)
    for e in train:
        sentence = e.prompt.removeprefix("Sentence: ").removesuffix("\nEntities:")
        positions = []
        for item in e.answer.strip().split(", "):
            name, tag = item.rsplit(" (", 1)
            assert tag.rstrip(")") in {"PER", "LOC", "ORG"}
            assert name in sentence
            positions.append(sentence.index(name))
        assert positions == sorted(positions)


def test_unknown_task():
    with pytest.raises(ValueError, match="Unknown task"):
        tasks.task_splits("french_poetry", 1, 1)


def test_corpus_never_uses_the_task_formats():
    corpus = tasks.pretraining_corpus()
    assert len(corpus) == 8000
    assert not any("Sentimiento:" in line or "Entities:" in line.split("\n")[-1][:9] for line in corpus)
    assert any("reseña" in line for line in corpus) and any("Paris" in line for line in corpus)


def test_task_words_are_what_the_sentences_are_built_from():
    from course_utils.tasks import task_splits, task_words

    for task in ("spanish_sentiment", "english_ner"):
        words = {w for items in task_words(task).values() for w in items}
        train, _ = task_splits(task, 40, 0)
        assert all(any(w in ex.prompt for w in words) for ex in train), task


def test_task_words_refuse_an_unknown_task_in_one_line():
    import pytest

    from course_utils.tasks import task_words

    with pytest.raises(ValueError, match="choose one of spanish_sentiment, english_ner"):
        task_words("french")
