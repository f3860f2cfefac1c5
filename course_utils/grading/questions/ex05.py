"""Exercise 5 (lesson 5, several adapters on one base): the per-learner data it gives, and the judges of its questions.

Q1 takes a PeftModel or a plain transformers model with adapters from ``load_adapter`` (rebuilt here from its tensors).
Q2 and Q4's functions are run by probes on a fresh model and seeded inputs the learner never saw, each forward pass
recorded (ex05_passes.py). Q3's `team` is retuned with fresh randomness and snapshot by its given cell.
"""
from __future__ import annotations

import random
import secrets
import tempfile
from functools import lru_cache
from pathlib import Path

import torch
from peft import PeftModel, get_peft_model
from safetensors.torch import load_file, save_file

from ...adapter_format import CONFIG_FILE, WEIGHTS_FILE, is_lora_name
from ...assets import ADAPTER_NAMES
from ...generation import complete
from ...learner import learner_seed
from ...models import load_base_model
from ...shipped import shipped_adapter
from ...tasks import _LOC, _NER_TEMPLATES, _ORG, _PER, _ner_sentence, _review, ner_prompt, sentiment_prompt
from ..evidence import Evidence, Opaque
from ..evidence import type_name as type_of
from ..rebuild import MAX_ADAPTERS, lora_config_from
from .common import (
    Question,
    adapter_folder,
    folder,
    holds,
    notebook_type,
    reload,
    require,
    same_logits,
    shipped,
    tokenizer,
    weights_of,
)
from .ex05_passes import BASE, active_adapter, call, generated, layers, quiet, record_passes

PROBE_SENTENCES, PROBE_BATCHES = 3, (("probe-a", 3), ("probe-b", 5))   # the unseen inputs of Q2's and Q4's probes
TEAM_GIVEN = "ex05_q3_given"   # the grade_id of the given cell that makes `team` and snapshots it (record_given)
_TEMPLATES = tuple(t for t in _NER_TEMPLATES if any(w in t for w in ("flew", "rained", "signed")))  # discriminate most


# ============================================================================ the data (learner's kernel and checker)
def _fresh_two() -> PeftModel:
    """A new base with both shipped adapters, spanish_sentiment active (probes pass it to the learner's functions)."""
    with quiet():
        model = PeftModel.from_pretrained(load_base_model(), str(shipped_adapter(ADAPTER_NAMES[0])),
                                          adapter_name=ADAPTER_NAMES[0])
        model.load_adapter(str(shipped_adapter(ADAPTER_NAMES[1])), adapter_name=ADAPTER_NAMES[1])
    return model.eval()


_two = lru_cache(maxsize=1)(_fresh_two)   # the checker's own copy (callers set the adapter they need)


def _run(adapter: str, prompt: str) -> str:
    """What ``adapter`` (``__base__``: none) writes for ``prompt`` alone, with the checker's model."""
    model = _two()
    if adapter == BASE:
        with model.disable_adapter():
            return complete(model, tokenizer(), prompt)
    model.set_adapter(adapter)
    return complete(model, tokenizer(), prompt)


@lru_cache(maxsize=64)
def ner_outputs(sentence: str) -> dict[str, str]:
    """The right NER output for ``sentence``, and what the wrong adapter or the wrong prompt writes instead."""
    return {"right": _run("english_ner", ner_prompt(sentence)),
            "the sentiment prompt": _run("english_ner", sentiment_prompt(sentence)),
            "spanish_sentiment": _run("spanish_sentiment", ner_prompt(sentence)),
            "the base model": _run(BASE, ner_prompt(sentence))}


def _candidate(rng: random.Random) -> tuple[str, str]:
    template = rng.choice(_TEMPLATES)
    values = {f"{kind}{i}": word for kind, words in (("PER", _PER), ("LOC", _LOC), ("ORG", _ORG))
              for i, word in zip(("", "2"), rng.sample(words, 2))}
    tags = sorted((template.index("{" + k + "}"), f"{v} ({k.rstrip('2')})") for k, v in values.items()
                  if "{" + k + "}" in template)
    return template.format(**values), ", ".join(t for _, t in tags)


@lru_cache(maxsize=16)
def sentence_for(seed: int, salt: str = "answer") -> str:
    """A sentence (course word lists) english_ner tags right, unlike the wrong adapter, the base or the wrong prompt."""
    rng = random.Random(f"ex05-{seed}-{salt}")
    for _ in range(200):
        sentence, gold = _candidate(rng)
        outs = dict(ner_outputs(sentence))
        right = outs.pop("right").strip()
        if right == gold and right not in {o.strip() for o in outs.values()}:
            return sentence
    raise RuntimeError("no discriminating sentence found")  # never seen: ~90% of candidates qualify


def learner_sentence(learner: str) -> str:
    """Exercise 5 Q2: the learner's sentence to tag."""
    return sentence_for(learner_seed(learner))


def batch_for(seed: int, salt: str = "answer", rows: int = 4) -> tuple[tuple[str, str], ...]:
    """``rows`` (adapter, prompt) pairs: every adapter and the base at least once, in a seeded order."""
    rng = random.Random(f"ex05-{seed}-{salt}")
    names = [*ADAPTER_NAMES, BASE] + [rng.choice((*ADAPTER_NAMES, BASE)) for _ in range(rows - 3)]
    rng.shuffle(names)
    return tuple((n, sentiment_prompt(_review(rng)[0]) if n == "spanish_sentiment" or n == BASE and rng.random() < 0.5
                  else ner_prompt(_ner_sentence(rng)[0])) for n in names)


def learner_batch(learner: str) -> tuple[list[str], list[str]]:
    """Exercise 5 Q4: the learner's mixed batch, as (prompts, adapter names)."""
    rows = batch_for(learner_seed(learner))
    return [p for _, p in rows], [n for n, _ in rows]


def teammate_model(learner: str):
    """Exercise 5 Q3: a plain transformers model with both adapters retuned (nothing on disk). The learner's seed
    picks which layers' lora_B moved; the moves come from ``secrets``: the weights exist only in this model (the
    given cell snapshots it with ``record_given``; Q3's judge compares the saved folders with that snapshot)."""
    rng, gen = random.Random(f"ex05-team-{learner_seed(learner)}"), torch.Generator().manual_seed(secrets.randbits(63))
    model = load_base_model()
    with tempfile.TemporaryDirectory() as tmp, quiet():
        for name in ADAPTER_NAMES:
            state = load_file(str(shipped_adapter(name) / WEIGHTS_FILE))
            moved = set(rng.sample(range(4), 2))   # 2 of the 4 blocks, per learner
            state = {k: t + 0.2 * t.abs().mean() * torch.randn(t.shape, generator=gen)
                     if is_lora_name(k, "B") and int(k.split(".h.")[1].split(".")[0]) in moved else t for k, t in state.items()}
            target = Path(tmp) / name
            target.mkdir()
            (target / CONFIG_FILE).write_bytes((shipped_adapter(name) / CONFIG_FILE).read_bytes())
            save_file(state, str(target / WEIGHTS_FILE), metadata={"format": "pt"})
            model.load_adapter(str(target), adapter_name=name)
    return model.eval()


# ============================================================================ Q1: both adapters on one base
def _from_plain(ev: Evidence, name: str, info: dict) -> PeftModel:
    """A plain transformers model with adapters (``load_adapter``), rebuilt by the checker from its tensors."""
    adapters = info["adapters"]
    require(len(adapters) <= MAX_ADAPTERS, f"`{name}` holds {len(adapters)} adapters.")
    configs = {str(k): lora_config_from(v, for_rebuild=True) for k, v in adapters.items()}
    require(not any(isinstance(c, Opaque) for c in configs.values()), f"`{name}` holds an adapter that is not LoRA.")
    (first, config), *rest = configs.items()
    model = get_peft_model(load_base_model(), config, adapter_name=first)
    for other, cfg in rest:
        model.add_adapter(other, cfg)
    where = (ev.folder / str(ev.raw(name).get("dir") or ev.raw(name).get("as"))).resolve()
    require(where.is_relative_to(ev.folder.resolve()) and not (where / "state.safetensors").is_symlink(),
            "the evidence names a file outside its folder.")
    state = {"base_model.model." + k: v for k, v in load_file(str(where / "state.safetensors")).items()}
    own = model.state_dict()
    odd = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    require(not odd, f"the layers of `{name}` do not match its adapter configs (e.g. {odd[:1]}).")
    require(all(k in state for k in own if is_lora_name(k)), f"`{name}` lacks some of its adapters' tensors.")
    with torch.no_grad():
        for key, tensor in state.items():
            own[key].copy_(tensor.to(own[key].dtype))
    return model.eval()


def as_peft(ev: Evidence, name: str) -> PeftModel:
    """The model answer ``name`` as a PeftModel: rebuilt from the evidence, whichever library loaded its adapters."""
    obj = ev.value(name)
    if isinstance(obj, PeftModel):
        return obj
    notebook_type(obj, name)
    info = ev.model_info(name)
    held = sorted(info.get("adapters") or {})
    require(held, f"`{name}` is a {type_of(obj)} with no adapters loaded: load the shipped adapters onto a base model "
                  "(lesson 5).")
    require(info.get("base_class") == "GPT2LMHeadModel" and info.get("class") == "GPT2LMHeadModel",
            f"`{name}` is a {type_of(obj)} holding {held}: the task asks for a PeftModel, or the base model with "
            "transformers' load_adapter (lesson 5, sections 1 and 4).")
    return _from_plain(ev, name, info)


@lru_cache(maxsize=1)
def _base_state() -> dict:
    return load_base_model().state_dict()


def _q1(ev: Evidence) -> str:
    """Lesson 5 (sections 1 and 4): both shipped adapters on one base, each under its own name, spanish_sentiment
    active; the logits of each are the checker's own load of that adapter."""
    model = as_peft(ev, "model")
    names = sorted(model.peft_config)
    for name in ADAPTER_NAMES:
        require(name in names, f"no adapter named {name!r} (the model has {names}): name each adapter when you load it.")
        require(holds(model, name, load_file(str(shipped_adapter(name) / WEIGHTS_FILE))),
                f"the adapter named {name!r} does not hold the weights of the shipped {name} adapter.")
    require(len(names) == len(ADAPTER_NAMES), f"`model` holds {names}: the task asks for the two shipped adapters only.")
    base = _base_state()
    own = {k.replace(".base_layer.", "."): v for k, v in model.get_base_model().state_dict().items() if not is_lora_name(k)}
    changed = sorted(k for k in set(base) | set(own) if k not in own or k not in base or not torch.equal(own[k], base[k]))
    require(not changed, f"the base weights of `model` are not the course's base model ({changed[:1]} differs): load "
                         "the adapters onto a fresh load_base_model() (lesson 5, section 1).")
    now = active_adapter(ev, "model")
    require(now == "spanish_sentiment", f"the active adapter is {now!r}; the task asks for spanish_sentiment (which "
                                        "adapter a load activates: lesson 5, sections 1 and 4).")
    for name in ADAPTER_NAMES:
        model.base_model.set_adapter(name)
        same_logits(shipped(name), model, f"`model` with {name} active")
    return "both shipped adapters on one base, spanish_sentiment active; each gives its shipped logits"


# ============================================================================ Q2: tag with the NER adapter
def _function(ev: Evidence, name: str) -> None:
    fn = ev.value(name)
    require(isinstance(fn, Opaque) and fn.function, f"`{name}` should be a function, not a {type_of(fn)}.")


def _probe_q2(answers: dict) -> dict:
    """In the learner's kernel: ``model``'s active adapter; ``tag`` run on unseen sentences, each on a fresh model
    whose forward passes are recorded."""
    out = {"active_state": layers(answers.get("model"))}
    tag = answers.get("tag")
    for i in range(PROBE_SENTENCES if callable(tag) else 0):
        model, calls = _fresh_two(), []
        record_passes(model, calls)
        out[f"tag{i}"] = {"text": call(tag, model, sentence_for(learner_seed(), f"probe{i}")), "calls": calls}
    return out


def _tag_ok(text, sentence: str, where: str) -> None:
    """``text`` is english_ner's output for ``sentence``; else the ✗ says which wrong adapter or prompt wrote it."""
    notebook_type(text, where)
    require(not (isinstance(text, dict) and "raised" in text),
            f"`tag` raised {isinstance(text, dict) and text.get('raised')} on a new sentence.")
    require(isinstance(text, str), f"{where} should be the generated text (a str), not a {type_of(text)}.")
    outs = ner_outputs(sentence)
    why = next((f"that is what {k} writes" + (" with the NER adapter" if "prompt" in k else "")
                for k, v in outs.items() if k != "right" and text.strip() == v.strip()), "that is not what english_ner "
                                                                                         "writes for it")
    require(text.strip() == outs["right"].strip(), f"{where}: {why} ({sentence!r}): switch to english_ner and generate "
                                                   "on the NER prompt (lesson 5, section 2).")


def _q2(ev: Evidence) -> str:
    """Lesson 5 (section 2): `tag` switches a model to english_ner and tags a sentence on the NER prompt; it is run
    on sentences the learner never saw; the learner's own sentence and model are checked too."""
    _function(ev, "tag")
    sentence = sentence_for(ev.seed)
    _tag_ok(ev.value("ner_output"), sentence, "`ner_output`")
    for i in range(PROBE_SENTENCES):
        seen, new = ev.probe(f"tag{i}") or {}, sentence_for(ev.seed, f"probe{i}")
        require(isinstance(seen, dict) and seen, "`tag` was not run on the new sentences.")
        _tag_ok(seen.get("text"), new, "on a model with spanish_sentiment active, `tag`")
        _generated(seen.get("calls"), (("english_ner", ner_prompt(new)),), "`tag` did not generate its text with "
                   "the model it was given, switched to english_ner: switch that model (its argument) and generate with"
                   " it (lesson 5, section 2).")
    now = active_adapter(ev, "model")
    require(now == "english_ner", f"`model`'s active adapter is {now!r}: `tag` should switch the model to english_ner.")
    return f"english_ner active; `tag` tags new sentences right; yours: {ner_outputs(sentence)['right'].strip()!r}"


# ============================================================================ Q3: save both adapters of a plain model
def _team(ev: Evidence) -> PeftModel:
    """`team` as the given cell made it (its ``record_given`` snapshot), rebuilt as a PeftModel."""
    snap = ev.earlier(TEAM_GIVEN)
    info = snap.model_info("team") if snap is not None else {}
    require(info.get("adapters"), "there is no record of `team` as it was given: run the cell that makes it (it "
                                  "records team), then save team's adapters.")
    return _from_plain(snap, "team", info)


def _q3(ev: Evidence) -> str:
    """Lesson 5 (section 4): both of team's retuned adapters saved, each in its own subfolder of one folder; the files
    hold the weights `team` held when it was given (its snapshot) and reload to team's own logits."""
    root = folder(ev, "saved_root")
    team = _team(ev)
    for name in ADAPTER_NAMES:
        sub = root / name
        require((sub / CONFIG_FILE).is_file(), f"no {name}/{CONFIG_FILE} under the folder" + (
            ": its root holds one adapter; a plain transformers model's save_pretrained writes only its active adapter "
            "(lesson 5, section 4)." if (root / CONFIG_FILE).is_file() else ": save each of team's adapters into its own "
            "subfolder."))
        adapter_folder(sub)
        saved = weights_of(sub)
        require(not holds(shipped(name), "default", saved),
                f"{name}/ holds the shipped {name} adapter, not the retuned one in `team`: save team's adapters "
                "(a copy of the shipped folder is not what team holds).")
        require(not holds(team, name, {"base_model.model." + k: v for k, v in saved.items()}),
                f"{name}/ holds team's weights under keys without the `base_model.model.` prefix: peft cannot load "
                "keys without that prefix; save in peft's format (lesson 5, section 4).")
        require(holds(team, name, saved), f"{name}/ does not hold the weights of team's {name} adapter (as its "
                                                 "cell last made it): save `team` itself, with that adapter active.")
        team.base_model.set_adapter(name)
        same_logits(team, reload(sub), f"the {name} adapter reloaded from {name}/")
    return "team's two retuned adapters, each in its own subfolder, reload to team's logits"


# ============================================================================ Q4: one mixed batch
@lru_cache(maxsize=16)
def _tokens(batch: tuple[tuple[str, str], ...]) -> tuple:
    """Per row: its prompt's ids, and the new ids the checker's own batched generation writes up to the row's text end."""
    tok = tokenizer()
    inputs = tok([p for _, p in batch], return_tensors="pt", padding=True, padding_side="left")
    with torch.no_grad():
        out = _two().generate(**inputs, adapter_names=[n for n, _ in batch], max_new_tokens=24, do_sample=False,
                              pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    rows = []
    for (_, prompt), new in zip(batch, out[:, inputs["input_ids"].shape[1]:].tolist()):
        end = next((k + 1 for k, t in enumerate(new) if t == tok.eos_token_id or "\n" in tok.decode(new[:k + 1])), 24)
        rows.append((tok(prompt)["input_ids"], new[:end]))
    return tuple(rows)


def _generated(calls, batch: tuple, why: str, pairing: str = "", then=None) -> None:
    generated(calls, batch, _tokens(tuple(batch)), tokenizer().pad_token_id, why, pairing, then)


def _probe_q4(answers: dict) -> dict:
    """In the learner's kernel: ``serve`` run on unseen seeded batches with a fresh model, recording its forwards."""
    serve = answers.get("serve")
    if not callable(serve):
        return {}
    out = {}
    for salt, rows in PROBE_BATCHES:
        batch = batch_for(learner_seed(), salt, rows)
        model, calls = _fresh_two(), []   # a model of its own: the hooks go with it
        record_passes(model, calls)
        out[salt] = {"texts": call(serve, model, [p for _, p in batch], [n for n, _ in batch]), "calls": calls}
    return out


@lru_cache(maxsize=8)
def mixed_expected(batch: tuple[tuple[str, str], ...]) -> list[str]:
    return complete(_two(), tokenizer(), [p for _, p in batch], adapter_names=[n for n, _ in batch])


def _texts(value, name: str, rows: int) -> list[str]:
    notebook_type(value, name)
    require(not (isinstance(value, dict) and "raised" in value),
            f"`serve` raised {isinstance(value, dict) and value.get('raised')} on a new batch.")
    require(isinstance(value, (list, tuple)), f"{name} should be a list of {rows} texts, not a {type_of(value)}.")
    require(len(value) == rows, f"{name} has {len(value)} rows; the batch has {rows}.")
    require(all(isinstance(v, str) for v in value), f"{name} should hold the generated texts (strings).")
    return [v.strip() for v in value]


def _rows_match(got: list[str], batch, expected: list[str], name: str, hint: str) -> None:
    for i, ((adapter, _), text, want) in enumerate(zip(batch, got, expected)):
        require(text == want.strip(), f"{name} row {i} is not what {adapter} writes for its prompt{hint}.")


def _one_call(calls, rows: int) -> None:
    require(isinstance(calls, list) and calls and all(isinstance(c, dict) for c in calls),
            "`serve` returned without running the model it was given on the batch.")
    sizes = sorted({len(c.get("ids") or []) for c in calls})
    require(sizes == [rows], f"`serve` ran the model on {sizes} row(s) at a time: answer the whole batch in one call "
                             "(lesson 5, section 3).")
    require(all(c.get("names") is not None for c in calls), "`serve` ran the batch without per-row adapter names: "
                                                            "each row gets the active adapter then (lesson 5, section 3).")


def _q4(ev: Evidence) -> str:
    """Lesson 5 (sections 2 and 3): `serve` answers a batch in one batched generation, each prompt with its own
    adapter; it is run on seeded batches the learner never saw, its forward passes recorded; `mixed` answers the
    learner's batch and each row equals the checker's own run of that adapter alone."""
    _function(ev, "serve")
    batch = batch_for(ev.seed)
    mixed = _texts(ev.value("mixed"), "`mixed`", len(batch))
    _rows_match(mixed, batch, mixed_expected(batch), "`mixed`", " in the mixed batch: pass one adapter name per row, "
                                                                "in the batch's order")
    _rows_match(mixed, batch, [_run(n, p) for n, p in batch], "`mixed`", " on its own")
    for salt, rows in PROBE_BATCHES:
        seen = ev.probe(salt) or {}
        new = batch_for(ev.seed, salt, rows)
        got = _texts(seen.get("texts"), f"on a new batch of {rows}, `serve`'s answer", rows)
        _one_call(seen.get("calls"), rows)
        _generated(seen.get("calls"), new, "`serve` did not generate its texts in the batched call: one forward pass "
                   "per new token, each with all the rows and their adapters (generate does that; lesson 5, section 3).",
                   "`serve` passed adapter names that are not the rows' own: each prompt must run with its own adapter "
                   "(rows may be in any order in the call; lesson 5, section 3).",
                   lambda got=got, new=new: _rows_match(got, new, mixed_expected(new), "on a new batch, `serve`'s", ""))
    return f"`serve` answers new batches in one batched generation; your {len(batch)} rows equal their one-adapter runs"


QUESTIONS = (
    Question("ex05_q1", 2, ("model",), _q1, probe=lambda answers: {"active_state": layers(answers.get("model"))}),
    Question("ex05_q2", 2, ("tag", "ner_output", "model"), _q2, probe=_probe_q2),
    Question("ex05_q3", 2, ("saved_root",), _q3),
    Question("ex05_q4", 3, ("serve", "mixed"), _q4, probe=_probe_q4),
)
