"""The course's running example: two small tasks and the text the base model was pretrained on.

Everything here is generated from word lists with a seeded random generator, so the corpus and
the task data are rebuilt byte for byte by ``python -m course_utils build-assets``.

Defined for: the shipped assets (see ``build_assets``); lesson 5 uses the prompts and scorers.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

EOS = "<|endoftext|>"

# ---------------------------------------------------------------- Spanish sentiment
_ES_SUBJECTS = [
    "La comida", "El servicio", "La película", "El hotel", "La habitación", "El libro",
    "La música", "El restaurante", "La camarera", "El producto", "La aplicación", "El viaje",
    "La pizza", "El café", "La tienda", "El concierto", "La serie", "El teléfono",
    "La playa", "El museo", "La clase", "El coche", "La cena", "El envío",
]
_ES_POS = [
    "fue excelente", "me encantó", "estaba deliciosa", "es maravillosa", "superó mis expectativas",
    "fue muy agradable", "es fantástica", "vale cada euro", "fue una alegría", "es perfecta",
    "estuvo genial", "fue increíble", "me hizo muy feliz", "es muy recomendable",
]
_ES_NEG = [
    "fue horrible", "me decepcionó", "estaba fría", "es terrible", "no cumplió lo prometido",
    "fue muy desagradable", "es un desastre", "no vale nada", "fue una pérdida de tiempo",
    "es pésima", "estuvo fatal", "fue aburrida", "me hizo enfadar", "no la recomiendo",
]
_ES_TAILS = [
    "", " Volveré pronto.", " No sé qué más decir.", " Lo digo en serio.", " Fuimos el sábado.",
    " Lo probé con mi familia.", " Era la primera vez.", " Todo el mundo lo comenta.",
]

# ---------------------------------------------------------------- English NER
_PER = [
    "Maria", "John", "Aisha", "Pedro", "Lucy", "Kenji", "Olga", "Samuel", "Fatima", "Tom",
    "Elena", "David", "Grace", "Omar", "Hannah", "Ivan", "Nora", "Carlos", "Emma", "Yusuf",
]
_LOC = [
    "Paris", "Madrid", "Tokyo", "Lima", "Berlin", "Cairo", "Sydney", "Toronto", "Lisbon",
    "Nairobi", "Oslo", "Mexico", "London", "Rome", "Dublin", "Seoul",
]
_ORG = [
    "Google", "Acme", "Siemens", "Oxfam", "Toyota", "Reuters", "UNICEF", "Nokia", "Airbus",
    "Spotify", "Intel", "Ikea",
]
_NER_TEMPLATES = [
    "{PER} works for {ORG} in {LOC}.",
    "{PER} moved to {LOC} last year.",
    "{ORG} opened a new office in {LOC}.",
    "{PER} met {PER2} in {LOC}.",
    "Yesterday {PER} visited {LOC}.",
    "{PER} joined {ORG} in May.",
    "The team at {ORG} hired {PER}.",
    "{PER} and {PER2} flew from {LOC} to {LOC2}.",
    "{ORG} signed a deal with {ORG2}.",
    "A reporter from {ORG} spoke with {PER}.",
    "{PER} lives near {LOC}.",
    "It rained all day in {LOC}.",
]

# ---------------------------------------------------------------- general text
_EN_TEXT = [
    "The morning was cold and the streets were quiet.", "She opened the window and looked at the sea.",
    "We walked to the market to buy bread and fruit.", "The train was late again, so he read a book.",
    "Learning a new language takes time and practice.", "The children played in the park until dark.",
    "He wrote a long letter to his old friend.", "The museum was full of paintings and old maps.",
    "They cooked dinner together and talked about the day.", "The river runs through the center of the town.",
    "A small dog was sleeping under the table.", "The teacher asked a question and waited.",
]
_ES_TEXT = [
    "La mañana era fría y las calles estaban tranquilas.", "Ella abrió la ventana y miró el mar.",
    "Fuimos al mercado a comprar pan y fruta.", "El tren llegó tarde otra vez, así que leyó un libro.",
    "Aprender un idioma nuevo requiere tiempo y práctica.", "Los niños jugaron en el parque hasta la noche.",
    "Escribió una carta larga a su viejo amigo.", "El museo estaba lleno de cuadros y mapas antiguos.",
    "Cocinaron la cena juntos y hablaron del día.", "El río pasa por el centro del pueblo.",
    "Un perro pequeño dormía debajo de la mesa.", "La profesora hizo una pregunta y esperó.",
]


@dataclass(frozen=True)
class Example:
    """One task example: ``prompt`` is what the model sees, ``answer`` what it should write."""

    prompt: str
    answer: str


def task_words(task: str) -> dict[str, list[str]]:
    """The word lists a task's sentences are built from, by kind; the adapters trained on it know only these.

    Defined in lesson 5, which prints them next to the playground (the playground shows them too).
    ``task`` is ``"spanish_sentiment"`` or ``"english_ner"``.
    """
    words = {"spanish_sentiment": {"subjects": _ES_SUBJECTS, "positive": _ES_POS, "negative": _ES_NEG},
             "english_ner": {"people": _PER, "places": _LOC, "organisations": _ORG}}
    if task not in words:
        raise ValueError(f"No task named {task!r}: choose one of {', '.join(words)}.")
    return {kind: list(items) for kind, items in words[task].items()}


def template_texts(task: str) -> list[str]:
    """The fixed texts around a task's words (review endings, sentence templates): known to its adapter too."""
    return list({"spanish_sentiment": _ES_TAILS, "english_ner": _NER_TEMPLATES}[task])


def sentiment_prompt(review: str) -> str:
    """Prompt format of the ``spanish_sentiment`` adapter (lesson 5)."""
    return f"Reseña: {review}\nSentimiento:"


def ner_prompt(sentence: str) -> str:
    """Prompt format of the ``english_ner`` adapter (lesson 5)."""
    return f"Sentence: {sentence}\nEntities:"


def _review(rng: random.Random) -> tuple[str, str]:
    label = rng.choice(["positivo", "negativo"])
    phrases = _ES_POS if label == "positivo" else _ES_NEG
    text = f"{rng.choice(_ES_SUBJECTS)} {rng.choice(phrases)}.{rng.choice(_ES_TAILS)}"
    return text, label


def _ner_sentence(rng: random.Random) -> tuple[str, str]:
    template = rng.choice(_NER_TEMPLATES)
    per, per2 = rng.sample(_PER, 2)
    loc, loc2 = rng.sample(_LOC, 2)
    org, org2 = rng.sample(_ORG, 2)
    values = {"PER": per, "PER2": per2, "LOC": loc, "LOC2": loc2, "ORG": org, "ORG2": org2}
    sentence = template.format(**values)
    # Entities in the order they appear in the sentence.
    found = []
    for key, value in values.items():
        if "{" + key + "}" in template:
            found.append((template.index("{" + key + "}"), f"{value} ({key.rstrip('2')})"))
    answer = ", ".join(tag for _, tag in sorted(found)) or "none"
    return sentence, answer


def _unique(make, rng: random.Random, n: int, exclude: set[str]) -> list[tuple[str, str]]:
    out, seen = [], set(exclude)
    for _ in range(n * 200):
        if len(out) == n:
            break
        text, answer = make(rng)
        if text not in seen:
            seen.add(text)
            out.append((text, answer))
    return out


def task_splits(task: str, n_train: int, n_test: int, seed: int = 0) -> tuple[list[Example], list[Example]]:
    """Train and held-out examples for ``task`` ("spanish_sentiment" or "english_ner").

    No held-out input text appears in the training split.
    """
    makers = {"spanish_sentiment": (_review, sentiment_prompt), "english_ner": (_ner_sentence, ner_prompt)}
    if task not in makers:
        raise ValueError(f"Unknown task {task!r}: use one of {sorted(makers)}.")
    make, prompt = makers[task]
    rng = random.Random(f"{task}-{seed}")
    test = _unique(make, rng, n_test, set())
    train = _unique(make, rng, n_train, {t for t, _ in test})
    to_ex = lambda pairs: [Example(prompt(t), " " + a) for t, a in pairs]  # noqa: E731
    return to_ex(train), to_ex(test)


_STORIES = [
    "{PER} met {PER2} in {LOC}. Later {PER2} wrote to {PER} from {LOC}.",
    "{PER} works at {ORG}. Everyone at {ORG} likes {PER}.",
    "{PER} flew to {LOC}. In {LOC}, {PER} met a friend from {ORG}.",
    "{PER} y {PER2} viven en {LOC}. {PER2} trabaja en {ORG}, y {PER} también.",
]


# Lines that use the words and marks the tasks need (tags, "sentence", "reseña"...) in other formats,
# so that their embeddings are trained before the adapters see them.
_GLOSSES = [
    "In this note {PER} (PER) works at {ORG} (ORG) in {LOC} (LOC).",
    "The sentence mentions {LOC} (LOC) and {PER} (PER) but no entities of type ORG.",
    "Entities in the news: {ORG} (ORG), {LOC} (LOC).",
    "Esta reseña es corta. Su sentimiento es {LABEL}.",
    "Una reseña puede ser positiva o negativa; el sentimiento de {PER} fue {LABEL}.",
    "Sentence one talks about {PER}; sentence two talks about {ORG}.",
]


def _story(rng: random.Random) -> str:
    per, per2 = rng.sample(_PER, 2)
    return rng.choice(_STORIES).format(PER=per, PER2=per2, LOC=rng.choice(_LOC), ORG=rng.choice(_ORG))


def _gloss(rng: random.Random) -> str:
    return rng.choice(_GLOSSES).format(PER=rng.choice(_PER), LOC=rng.choice(_LOC), ORG=rng.choice(_ORG),
                                       LABEL=rng.choice(["positivo", "negativo"]))


def pretraining_corpus(n_lines: int = 8000, seed: int = 0) -> list[str]:
    """English and Spanish text the tiny base model is pretrained on (never in the tasks' prompt formats)."""
    rng = random.Random(f"corpus-{seed}")
    lines = []
    for i in range(n_lines):
        kind = i % 6
        if kind == 5:
            lines.append(_gloss(rng) + "\n" + _gloss(rng))
        elif kind == 4:
            lines.append(_story(rng))
        elif kind == 0:
            lines.append(_review(rng)[0])
        elif kind == 1:
            lines.append(_ner_sentence(rng)[0])
        elif kind == 2:
            lines.append(" ".join(rng.sample(_EN_TEXT, 2)))
        else:
            lines.append(" ".join(rng.sample(_ES_TEXT, 2)))
    return lines
