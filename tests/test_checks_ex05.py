"""Exercise 5 (switching adapters): its checks accept right answers, and reject wrong
ones with feedback that says what is wrong.
Real objects built from the shipped tiny model; each question has right variants and wrong answers."""
from __future__ import annotations

import copy
import shutil
import warnings

import pytest
import torch
from check_assertions import AlwaysEqual, fails, passes
from peft import LoraConfig, PeftMixedModel, PeftModel, get_peft_model
from safetensors.torch import save_file

from course_utils import complete, load_base_model, load_tokenizer, shipped_adapter
from course_utils.grading.evidence import evidence_root, record_given
from course_utils.grading.questions import ex05
from course_utils.learner import learner_seed
from course_utils.tasks import ner_prompt, sentiment_prompt

NAMES = ("spanish_sentiment", "english_ner")


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def _both(first="spanish_sentiment", second="english_ner", names=None):
    """A PeftModel on a fresh base with two shipped adapters, loaded under ``names`` (default: their own names)."""
    names = names or (first, second)
    model = PeftModel.from_pretrained(load_base_model(), shipped_adapter(first), adapter_name=names[0])
    model.load_adapter(shipped_adapter(second), adapter_name=names[1])
    return model


def _plain(*order):
    """A plain transformers model that got the shipped adapters from transformers' ``load_adapter``."""
    model = load_base_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in order:
            model.load_adapter(str(shipped_adapter(name)), adapter_name=name)
    return model


# ---------------------------------------------------------------------------------------------- Q1
def _ner_first_switched():
    model = _both("english_ner", "spanish_sentiment")
    model.set_adapter("spanish_sentiment")
    return model


def _plain_switched():
    model = _plain("spanish_sentiment", "english_ner")
    model.set_adapter("spanish_sentiment")
    return model


def _trainable():
    model = PeftModel.from_pretrained(load_base_model(), shipped_adapter("spanish_sentiment"),
                                      adapter_name="spanish_sentiment", is_trainable=True)
    model.load_adapter(shipped_adapter("english_ner"), adapter_name="english_ner", is_trainable=True)
    return model


@pytest.mark.parametrize("make", [
    _both, _ner_first_switched, _plain_switched, lambda: _plain("english_ner", "spanish_sentiment"), _trainable,
], ids=["peft", "peft-ner-first-switched", "transformers-switched", "transformers-spanish-last", "trainable"])
def test_ex05_q1_right(make, capsys):
    passes("ex05_q1", capsys, model=make())


def _base_changed():
    model = _both()
    with torch.no_grad():
        model.base_model.model.transformer.h[2].mlp.c_fc.base_layer.weight.add_(0.05)
    return model


def _two_active():
    model = _both()
    model.base_model.set_adapter(list(NAMES))
    return model


def _plain_disabled():
    model = _plain("english_ner", "spanish_sentiment")
    model.disable_adapters()
    return model


def _random_named():
    torch.manual_seed(0)
    config = LoraConfig(r=16, lora_alpha=32, target_modules=["c_attn", "c_proj", "c_fc"], init_lora_weights=False)
    model = get_peft_model(load_base_model(), config, adapter_name="spanish_sentiment")
    model.add_adapter("english_ner", config)
    return model


def _late_positions():   # positions past any short test batch: only a whole-base comparison sees them
    model = _both()
    with torch.no_grad():
        model.base_model.model.transformer.wpe.weight[40:] += 1.0
    return model


def _third():
    model = _both()
    model.add_adapter("junk", LoraConfig(r=4, target_modules=["c_attn"]))
    model.set_adapter("spanish_sentiment")
    return model


def _mixed_class():
    model = PeftMixedModel.from_pretrained(load_base_model(), shipped_adapter("spanish_sentiment"),
                                           adapter_name="spanish_sentiment")
    model.load_adapter(shipped_adapter("english_ner"), adapter_name="english_ner")
    model.set_adapter("spanish_sentiment")
    return model


Q1_WRONG = {
    "one adapter": (lambda: PeftModel.from_pretrained(load_base_model(), shipped_adapter("spanish_sentiment"),
                                                      adapter_name="spanish_sentiment"), "no adapter named 'english_ner'"),
    "default name": (lambda: _both(names=("default", "english_ner")), "no adapter named 'spanish_sentiment'"),
    "same twice": (lambda: _both("spanish_sentiment", "spanish_sentiment", names=NAMES),
                   "does not hold the weights of the shipped english_ner"),
    "swapped": (lambda: _both("english_ner", "spanish_sentiment", names=NAMES),
                "does not hold the weights of the shipped spanish_sentiment"),
    "random weights": (_random_named, "does not hold the weights of the shipped"),
    "ner active": (lambda: _both("english_ner", "spanish_sentiment"), "active adapter is 'english_ner'"),
    "transformers ner active": (lambda: _plain("spanish_sentiment", "english_ner"), "active adapter is 'english_ner'"),
    "two active": (_two_active, "activate exactly one"),
    "disabled": (_plain_disabled, "adapters of `model` are disabled"),
    "base changed": (_base_changed, "base weights of `model` are not the course's base model"),
    "late positions changed": (_late_positions, r"\['transformer.wpe.weight'\] differs"),
    "a third adapter": (_third, "the task asks for the two shipped adapters only"),
    "PeftMixedModel": (_mixed_class, r"PeftMixedModel holding \['english_ner', 'spanish_sentiment'\]"),
    "plain base": (load_base_model, "with no adapters loaded"),
    "merged": (lambda: _both().merge_and_unload(), "with no adapters loaded"),
    "always equal": (AlwaysEqual, "a type the notebook made|with no adapters"),
}


@pytest.mark.parametrize("case", Q1_WRONG)
def test_ex05_q1_wrong(case):
    make, message = Q1_WRONG[case]
    fails("ex05_q1", message, model=make())


# ---------------------------------------------------------------------------------------------- Q2
def _tag(model, sentence):
    model.set_adapter("english_ner")
    return complete(model, load_tokenizer(), ner_prompt(sentence))


def _tag_batched(model, sentence):
    model.set_adapter("english_ner")
    return complete(model, load_tokenizer(), [ner_prompt(sentence)])[0] + "\n"


def _tag_generate(model, sentence):   # generate itself, no cache, more tokens, cut at the newline
    tok = load_tokenizer()
    model.set_adapter("english_ner")
    ids = tok(ner_prompt(sentence), return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=40, do_sample=False, pad_token_id=tok.eos_token_id, use_cache=False)
    return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).split("\n")[0]


def _tag_names(model, sentence):
    model.base_model.set_adapter("english_ner")
    return complete(model, load_tokenizer(), [ner_prompt(sentence)], adapter_names=["english_ner"])[0]


@pytest.mark.parametrize("tag", [_tag, _tag_batched, _tag_generate, _tag_names])
@pytest.mark.parametrize("make", [_both, _plain_switched], ids=["peft", "transformers"])
def test_ex05_q2_right(tag, make, capsys):
    if make is _plain_switched and tag is _tag_names:
        pytest.skip("adapter_names is peft's")
    model = make()
    passes("ex05_q2", capsys, tag=tag, ner_output=tag(model, ex05.learner_sentence("ci")), model=model)


def _no_switch(model, sentence):
    return complete(model, load_tokenizer(), ner_prompt(sentence))


def _wrong_prompt(model, sentence):
    model.set_adapter("english_ner")
    return complete(model, load_tokenizer(), sentiment_prompt(sentence))


def _disabled(model, sentence):
    model.set_adapter("english_ner")
    with model.disable_adapter():
        return complete(model, load_tokenizer(), ner_prompt(sentence))


def _names_only(model, sentence):  # right text, but the model is not switched
    return complete(model, load_tokenizer(), [ner_prompt(sentence)], adapter_names=["english_ner"])[0]


def _raises(model, sentence):
    raise KeyError(sentence)


def _as_list(model, sentence):
    return [_tag(model, sentence)]


def _typed_in(model, sentence):  # the text printed for learner ci, typed in
    return ex05.ner_outputs(ex05.learner_sentence("ci"))["right"]


_NOTEBOOK = {}   # what a notebook's global `model` would be


def _global_model(model, sentence):   # ignores its argument
    return _tag(_NOTEBOOK.setdefault("model", _both()), sentence)


def _private_model(model, sentence):   # switches its argument, generates with a model of its own
    model.set_adapter("english_ner")
    return _tag(_NOTEBOOK.setdefault("private", _both()), sentence)


def _recipe(model, sentence):   # switches, then the course's own answer instead of generating
    model.set_adapter("english_ner")
    return ex05.ner_outputs(sentence)["right"]


def _one_pass_recipe(model, sentence):   # one forward with english_ner, the text from the recipe
    model.set_adapter("english_ner")
    model(**load_tokenizer()(ner_prompt(sentence), return_tensors="pt"))
    return ex05.ner_outputs(sentence)["right"]


Q2_WRONG = {
    "not switched": (_no_switch, "what spanish_sentiment writes"),
    "wrong prompt": (_wrong_prompt, "what the sentiment prompt writes with the NER adapter"),
    "adapters off": (_disabled, "what the base model writes"),
    "not switched, names per call": (_names_only, "active adapter is 'spanish_sentiment'"),
    "raises": (_raises, "raised KeyError"),
    "a list": (_as_list, "should be the generated text"),
    "typed in": (_typed_in, "on a model with spanish_sentiment active"),
    "not a function": ("english_ner", "should be a function"),
    "global model": (_global_model, "did not generate its text with the model it was given"),
    "private model": (_private_model, "did not generate its text with the model it was given"),
    "recipe text": (_recipe, "did not generate its text with the model it was given"),
    "one pass, recipe text": (_one_pass_recipe, "did not generate its text with the model it was given"),
}


@pytest.mark.parametrize("case", Q2_WRONG)
def test_ex05_q2_wrong(case):
    tag, message = Q2_WRONG[case]
    model = _both()
    sentence = ex05.learner_sentence("ci")
    runs = callable(tag) and case in ("not switched", "wrong prompt", "adapters off", "not switched, names per call")
    output = tag(model, sentence) if runs else _tag(_both(), sentence)
    fails("ex05_q2", message, tag=tag, ner_output=output, model=model)


def test_ex05_q2_wrong_output(monkeypatch):
    model = _both()
    ci_text = _tag(model, ex05.learner_sentence("ci"))
    fails("ex05_q2", "should be the generated text", tag=_tag, ner_output=[ci_text], model=model)
    fails("ex05_q2", "should be the generated text", tag=_tag, ner_output=AlwaysEqual(), model=model)
    fails("ex05_q2", "not what english_ner writes|what", tag=_tag, model=model,
          ner_output=_tag(model, ex05.sentence_for(learner_seed("ci"), "probe0")))
    monkeypatch.setenv("COURSE_LEARNER", "bob")   # learner ci's text typed in by bob
    fails("ex05_q2", r"`ner_output`: .*'" + ex05.learner_sentence("bob")[:10], tag=_tag, ner_output=ci_text,
          model=model)


@pytest.mark.parametrize("seed", range(40))
def test_ex05_sentences_discriminate(seed):
    """Over many learners: only english_ner on the NER prompt writes the sentence's tags (recipe and probes)."""
    for salt in ("answer", "probe0"):
        sentence = ex05.sentence_for(seed, salt)
        outs = dict(ex05.ner_outputs(sentence))
        right = outs.pop("right").strip()
        assert right and right not in {o.strip() for o in outs.values()}, (sentence, outs)
    assert len({ex05.sentence_for(s) for s in range(40)}) > 30


# ---------------------------------------------------------------------------------------------- Q3
def _save_each(team, root, **kwargs):
    for name in NAMES:
        team.set_adapter(name)
        team.save_pretrained(root / name, **kwargs)


@pytest.fixture()
def team():
    """`team` as the given cell makes it, with its snapshot recorded (what Q3's judge compares the folders with)."""
    team = ex05.teammate_model("ci")
    record_given(ex05.TEAM_GIVEN, team=team)
    return team


def _peft_multi(team, root):   # team's adapters into a PeftModel, whose save_pretrained makes a subfolder for each
    _save_each(team, root.parent / "tmp")
    model = PeftModel.from_pretrained(load_base_model(), str(root.parent / "tmp" / NAMES[0]), adapter_name=NAMES[0])
    model.load_adapter(str(root.parent / "tmp" / NAMES[1]), adapter_name=NAMES[1])
    model.save_pretrained(root)


@pytest.mark.parametrize("save", [
    _save_each, lambda team, root: _save_each(team, root, safe_serialization=False),
    lambda team, root: _save_each(copy.deepcopy(team), root), _peft_multi,
], ids=["safetensors", "bin", "deepcopy", "peft-multi"])
def test_ex05_q3_right(save, tmp_path, capsys, team):
    save(team, tmp_path / "both")
    passes("ex05_q3", capsys, saved_root=tmp_path / "both")
    passes("ex05_q3", capsys, saved_root=str(tmp_path / "both"))


def _copied(root, team):
    for name in NAMES:
        shutil.copytree(shipped_adapter(name), root / name)


def _peft_saved(root, team):
    _both().save_pretrained(root)


def _naive(root, team):
    team.save_pretrained(root)


def _other_learner(root, team):
    _save_each(ex05.teammate_model("bob"), root)


def _swapped(root, team):
    for saved, name in zip(NAMES, NAMES[::-1]):
        team.set_adapter(saved)
        team.save_pretrained(root / name)


def _only_one(root, team):
    team.save_pretrained(root / "english_ner")


def _no_weights(root, team):
    _save_each(team, root)
    (root / "english_ner" / "adapter_model.safetensors").unlink()


def _alpha_edited(root, team):
    _save_each(team, root)
    config = root / "spanish_sentiment" / "adapter_config.json"
    config.write_text(config.read_text().replace('"lora_alpha": 32', '"lora_alpha": 64'))


def _nothing(root, team):
    pass


def _rebuilt(root, team):   # the given recipe run again: new random numbers, not team's
    _save_each(ex05.teammate_model("ci"), root)


def _unprefixed(root, team):   # keys as transformers' get_adapter_state_dict gives them
    for name in NAMES:
        (root / name).mkdir(parents=True)
        team.peft_config[name].save_pretrained(str(root / name))
        save_file(team.get_adapter_state_dict(name), str(root / name / "adapter_model.safetensors"))


def _retuned_after(root, team):   # team's weights changed after the given cell, then saved
    with torch.no_grad():
        next(p for n, p in team.named_parameters() if "lora_B.spanish_sentiment" in n).add_(0.01)
    _save_each(team, root)


Q3_WRONG = {
    "copied shipped": (_copied, "holds the shipped spanish_sentiment adapter, not the retuned one"),
    "saved a shipped PeftModel": (_peft_saved, "holds the shipped spanish_sentiment adapter"),
    "naive save": (_naive, "writes only its active adapter"),
    "another learner's team": (_other_learner, "does not hold the weights of team's spanish_sentiment"),
    "swapped": (_swapped, "does not hold the weights of team's spanish_sentiment"),
    "only one": (_only_one, "no spanish_sentiment/adapter_config.json"),
    "no weights": (_no_weights, "no adapter_model.safetensors"),
    "alpha edited": (_alpha_edited, "spanish_sentiment adapter reloaded .* gives different logits"),
    "nothing saved": (_nothing, "nothing was saved"),
    "rebuilt from the recipe": (_rebuilt, "does not hold the weights of team's spanish_sentiment"),
    "keys without prefix": (_unprefixed, "peft cannot load keys without that prefix"),
    "save_peft_format=False": (lambda root, team: _save_each(team, root, save_peft_format=False),
                               "peft cannot load keys without that prefix"),
    "changed after given": (_retuned_after, "does not hold the weights of team's spanish_sentiment"),
}


@pytest.mark.parametrize("case", Q3_WRONG)
def test_ex05_q3_wrong(case, tmp_path, team):
    make, message = Q3_WRONG[case]
    root = tmp_path / "root"
    make(root, team)
    fails("ex05_q3", message, saved_root=root)


def test_ex05_q3_not_a_path(team):
    fails("ex05_q3", "should be the folder's path", saved_root=team)


def test_ex05_q3_no_snapshot(tmp_path, team):
    _save_each(team, tmp_path / "both")
    shutil.rmtree(evidence_root() / ex05.TEAM_GIVEN)
    fails("ex05_q3", "no record of `team` as it was given", saved_root=tmp_path / "both")


# ---------------------------------------------------------------------------------------------- Q4
def _serve(model, prompts, adapters):
    return complete(model, load_tokenizer(), prompts, adapter_names=adapters)


def _serve_generate(model, prompts, adapters):
    tok = load_tokenizer()
    inputs = tok(prompts, return_tensors="pt", padding=True, padding_side="left")
    out = model.generate(**inputs, adapter_names=list(adapters), max_new_tokens=24, do_sample=False,
                         pad_token_id=tok.pad_token_id)
    texts = tok.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    return [t.split("\n")[0] for t in texts]


def _single(model, prompts, adapters):
    out = []
    for name, prompt in zip(adapters, prompts):
        if name == "__base__":
            with model.disable_adapter():
                out.append(complete(model, load_tokenizer(), prompt))
        else:
            model.set_adapter(name)
            out.append(complete(model, load_tokenizer(), prompt))
    return out


def _grouped(model, prompts, adapters):   # rows grouped by adapter inside the one call, answers put back in order
    order = sorted(range(len(prompts)), key=lambda i: adapters[i])
    out = complete(model, load_tokenizer(), [prompts[i] for i in order], adapter_names=[adapters[i] for i in order])
    return [out[order.index(i)] for i in range(len(prompts))]


def _no_cache(model, prompts, adapters):   # generate without the cache, a tuple of names, more tokens
    tok = load_tokenizer()
    inputs = tok(prompts, return_tensors="pt", padding=True, padding_side="left")
    out = model.generate(**inputs, adapter_names=tuple(adapters), max_new_tokens=30, do_sample=False,
                         pad_token_id=tok.pad_token_id, use_cache=False)
    return [t.split("\n")[0] for t in tok.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)]


def _answers(serve=_serve):
    prompts, adapters = ex05.learner_batch("ci")
    return dict(serve=serve, mixed=_serve(_both(), prompts, adapters))


@pytest.mark.parametrize("serve", [_serve, _serve_generate, _grouped, _no_cache],
                         ids=["complete", "generate", "grouped", "no-cache"])
def test_ex05_q4_right(serve, capsys):
    passes("ex05_q4", capsys, **_answers(serve))


def test_ex05_q4_right_mixed_from_single_runs(capsys):
    """`mixed` is just the learner's texts: each row equals its one-adapter run, however it was made."""
    prompts, adapters = ex05.learner_batch("ci")
    passes("ex05_q4", capsys, serve=_serve, mixed=_single(_both(), prompts, adapters))


def _no_names(model, prompts, adapters):
    return complete(model, load_tokenizer(), prompts)


def _reversed(model, prompts, adapters):
    return complete(model, load_tokenizer(), prompts, adapter_names=list(adapters)[::-1])


def _reused(model, prompts, adapters):   # the learner's own results, reused
    return _answers()["mixed"]


def _short(model, prompts, adapters):
    return complete(model, load_tokenizer(), prompts, adapter_names=adapters, max_new_tokens=3)


def _raising(model, prompts, adapters):
    raise RuntimeError("no")


def _dummy_pass(model, prompts, adapters, passes=1):   # batched passes with the names, texts made elsewhere
    inputs = load_tokenizer()(prompts, return_tensors="pt", padding=True, padding_side="left")
    for _ in range(passes):
        model(**inputs, adapter_names=list(adapters))
    return _single(_NOTEBOOK.setdefault("private", _both()), prompts, adapters)


def _dummy_recipe(model, prompts, adapters):
    model(**load_tokenizer()(prompts, return_tensors="pt", padding=True, padding_side="left"),
          adapter_names=list(adapters))
    return ex05.mixed_expected(tuple(zip(adapters, prompts)))


def _shuffled_names(model, prompts, adapters):   # rows grouped, but the names not moved with their prompts
    order = sorted(range(len(prompts)), key=lambda i: adapters[i])
    out = complete(model, load_tokenizer(), [prompts[i] for i in order], adapter_names=adapters)
    return [out[order.index(i)] for i in range(len(prompts))]


Q4_WRONG_SERVE = {
    "one row at a time": (_single, r"ran the model on \[1\] row"),
    "no adapter names": (_no_names, "without per-row adapter names"),
    "names reversed": (_reversed, "not the rows' own"),
    "names not moved with rows": (_shuffled_names, "not the rows' own"),
    "one pass, rows elsewhere": (_dummy_pass, "did not generate its texts in the batched call"),
    "30 passes, rows elsewhere": (lambda m, p, a: _dummy_pass(m, p, a, 30), "did not generate its texts in the batched"),
    "one pass, recipe texts": (_dummy_recipe, "did not generate its texts in the batched call"),
    "global model": (lambda m, p, a: _serve(_NOTEBOOK.setdefault("model", _both()), p, a), "returned without running"),
    "reused results": (_reused, "has 4 rows; the batch has 3|returned without running the model"),
    "cut short": (_short, r"on a new batch, `serve`'s row \d is not what"),
    "raises": (_raising, "raised RuntimeError"),
    "not a function": ("complete", "should be a function"),
}


@pytest.mark.parametrize("case", Q4_WRONG_SERVE)
def test_ex05_q4_wrong_serve(case):
    serve, message = Q4_WRONG_SERVE[case]
    fails("ex05_q4", message, **_answers(serve))


def test_ex05_q4_wrong_answers(monkeypatch):
    answers = _answers()
    prompts, adapters = ex05.learner_batch("ci")
    model = _both()
    model.set_adapter("english_ner")
    one_adapter = complete(model, load_tokenizer(), prompts)
    fails("ex05_q4", r"`mixed` row \d is not what \w+ writes .* in the mixed batch", **{**answers, "mixed": one_adapter})
    fails("ex05_q4", "has 2 rows", **{**answers, "mixed": answers["mixed"][:2]})
    fails("ex05_q4", "should be a list of 4 texts", **{**answers, "mixed": " ".join(answers["mixed"])})
    fails("ex05_q4", "should hold the generated texts", **{**answers, "mixed": [AlwaysEqual()] * 4})
    other = ex05.batch_for(learner_seed("ci"), "probe-a", 3)   # another batch answered
    fails("ex05_q4", "has 3 rows", **{**answers, "mixed": _serve(_both(), [p for _, p in other], [n for n, _ in other])})
    monkeypatch.setenv("COURSE_LEARNER", "bob")   # ci's texts, handed in by bob
    assert learner_seed("bob") != learner_seed("ci")
    fails("ex05_q4", "`mixed` row", **answers)


def test_ex05_q3_other_learner(tmp_path, monkeypatch, team):
    """Learner ci's right folder, handed in by bob (whose kernel recorded bob's own team), fails."""
    _save_each(team, tmp_path / "ci")
    monkeypatch.setenv("COURSE_LEARNER", "bob")
    record_given(ex05.TEAM_GIVEN, team=ex05.teammate_model("bob"))
    fails("ex05_q3", "does not hold the weights of team's spanish_sentiment", saved_root=tmp_path / "ci")


def test_ex05_data_is_per_learner():
    """Each learner gets their own sentence and batch; team's weights are new each time it is made (only the
    snapshot knows them); the probes' inputs are new to the learner."""
    ci, bob = learner_seed("ci"), learner_seed("bob")
    assert ex05.sentence_for(ci) != ex05.sentence_for(bob)
    assert ex05.batch_for(ci) != ex05.batch_for(bob)
    one, two = (dict(ex05.teammate_model("ci").named_parameters()) for _ in range(2))
    moved = [k for k in one if "lora_B" in k and not torch.equal(one[k], two[k])]
    assert moved and len(moved) < len([k for k in one if "lora_B" in k])
    assert ex05.sentence_for(ci) not in {ex05.sentence_for(ci, f"probe{i}") for i in range(ex05.PROBE_SENTENCES)}
    for salt, rows in ex05.PROBE_BATCHES:
        batch = ex05.batch_for(ci, salt, rows)
        assert len(batch) == rows and {n for n, _ in batch} == {*NAMES, "__base__"}
        assert not {p for _, p in batch} <= {p for _, p in ex05.batch_for(ci)}
