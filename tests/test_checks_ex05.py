"""Exercise 5 (switching adapters): its checks accept right answers, and reject wrong
ones with feedback that says what is wrong.
Real objects built from the shipped tiny model; each question has right variants and wrong answers."""
from __future__ import annotations

import pytest
import torch
from check_assertions import AlwaysEqual, fails, passes
from peft import LoraConfig, PeftModel, get_peft_model

from course_utils import (
    complete,
    load_base_model,
    load_tokenizer,
    shipped_adapter,
)
from course_utils.grading.checks import (
    MIXED_ROWS,
    NER_SENTENCE,
    given_adapter,
    mixed_prompts,
)
from course_utils.tasks import ner_prompt, sentiment_prompt


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




# ---------------------------------------------------------------------------------------- exercise 5
def _two(first="english_ner", second="spanish_sentiment", names=None):
    """A base model with two shipped adapters, loaded under ``names`` (default: the adapters' own names)."""
    names = names or (first, second)
    model = PeftModel.from_pretrained(load_base_model(), shipped_adapter(first), adapter_name=names[0])
    model.load_adapter(shipped_adapter(second), adapter_name=names[1])
    return model


def _both(*adapters, names=None):
    """Exercise 5's model: the Spanish adapter first, then the NER one (``_two`` in the other order)."""
    return _two(*(adapters or ("spanish_sentiment", "english_ner")), names=names)


def test_ex05_q1(capsys):
    passes("ex05_q1", capsys, model=_both())
    passes("ex05_q1", capsys, model=_both("english_ner", "spanish_sentiment"))
    one = PeftModel.from_pretrained(load_base_model(), shipped_adapter("spanish_sentiment"),
                                    adapter_name="spanish_sentiment")
    fails("ex05_q1", "no adapter named 'english_ner'", model=one)
    fails("ex05_q1", "no adapter named 'spanish_sentiment'", model=_both(names=("default", "english_ner")))
    fails("ex05_q1", "does not hold the weights of the shipped english_ner",
          model=_both("spanish_sentiment", "spanish_sentiment", names=("spanish_sentiment", "english_ner")))
    fails("ex05_q1", "does not hold the weights of the shipped spanish_sentiment",
          model=_both("english_ner", "english_ner", names=("spanish_sentiment", "english_ner")))
    fails("ex05_q1", "not a PeftModel", model=load_base_model())


def test_ex05_q2(capsys, tok):
    model = _both()
    model.set_adapter("english_ner")
    out = complete(model, tok, ner_prompt(NER_SENTENCE))
    passes("ex05_q2", capsys, ner_output=out, model=model)
    passes("ex05_q2", capsys, ner_output=complete(model, tok, [ner_prompt(NER_SENTENCE)])[0] + "\n", model=model)
    fails("ex05_q2", "not what english_ner writes",
          ner_output=complete(model, tok, sentiment_prompt("La comida fue excelente.")), model=model)
    with model.disable_adapter():
        base_out = complete(model, tok, ner_prompt(NER_SENTENCE))
    fails("ex05_q2", "not what english_ner writes", ner_output=base_out, model=model)
    spanish = _both()
    fails("ex05_q2", "active adapter is 'spanish_sentiment'",
          ner_output=complete(spanish, tok, ner_prompt(NER_SENTENCE)), model=spanish)
    fails("ex05_q2", "should be the generated text", ner_output=[out], model=model)
    fails("ex05_q2", "should be the generated text", ner_output=AlwaysEqual(), model=model)


def test_ex05_q3(tmp_path, capsys):
    model = _both()
    root = tmp_path / "both"
    fails("ex05_q3", "nothing was saved", saved_root=root)
    model.save_pretrained(root)
    passes("ex05_q3", capsys, saved_root=root)
    one_by_one = tmp_path / "one_by_one"
    for name in ("spanish_sentiment", "english_ner"):
        model.save_pretrained(one_by_one, selected_adapters=[name])
    passes("ex05_q3", capsys, saved_root=str(one_by_one))
    only_active = tmp_path / "only"
    model.save_pretrained(only_active, selected_adapters=["spanish_sentiment"])
    fails("ex05_q3", "no english_ner/adapter_config.json", saved_root=only_active)
    tampered = tmp_path / "tampered"
    model.save_pretrained(tampered)
    (tampered / "english_ner" / "adapter_model.safetensors").write_bytes(
        (root / "spanish_sentiment" / "adapter_model.safetensors").read_bytes())
    fails("ex05_q3", "english_ner adapter reloaded from english_ner/ gives different logits", saved_root=tampered)
    no_weights = tmp_path / "noweights"
    model.save_pretrained(no_weights)
    (no_weights / "spanish_sentiment" / "adapter_model.safetensors").unlink()
    fails("ex05_q3", "no adapter_model.safetensors", saved_root=no_weights)
    flat = tmp_path / "flat"
    model.save_pretrained(flat, selected_adapters=["spanish_sentiment"])
    fails("ex05_q3", "no spanish_sentiment/adapter_config.json", saved_root=flat / "spanish_sentiment")
    fails("ex05_q3", "should be the folder's path", saved_root=model)


def _single_runs(model, tok, prompts, names):
    out = []
    for name, prompt in zip(names, prompts):
        if name == "__base__":
            with model.disable_adapter():
                out.append(complete(model, tok, prompt))
        else:
            model.set_adapter(name)
            out.append(complete(model, tok, prompt))
    return out


def test_ex05_q4(capsys, tok):
    model = _both()
    prompts, names = mixed_prompts(), [n for n, _ in MIXED_ROWS]
    mixed = complete(model, tok, prompts, adapter_names=names)
    single = _single_runs(model, tok, prompts, names)
    passes("ex05_q4", capsys, mixed=mixed, single=single)
    base = load_base_model()  # the base row from a separate plain model instead of disable_adapter
    alt_single = single[:2] + [complete(base, tok, prompts[2])]
    passes("ex05_q4", capsys, mixed=tuple(mixed), single=alt_single)
    model.set_adapter("english_ner")
    one_adapter = complete(model, tok, prompts)
    fails("ex05_q4", "`mixed` row 1 is not what spanish_sentiment writes", mixed=one_adapter, single=single)
    fails("ex05_q4", "`mixed` row 0", mixed=complete(model, tok, prompts, adapter_names=names[::-1]), single=single)
    fails("ex05_q4", "`single` row 2 is not what __base__ writes", mixed=mixed, single=single[:2] + [one_adapter[2]])
    fails("ex05_q4", "has 2 rows", mixed=mixed[:2], single=single)
    fails("ex05_q4", "should be a list of 3 texts", mixed=" ".join(mixed), single=single)
    fails("ex05_q4", "should hold the generated texts", mixed=mixed, single=[AlwaysEqual()] * 3)


