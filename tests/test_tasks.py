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
