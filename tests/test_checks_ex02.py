"""Exercise 2 (reloading an adapter): its checks accept right answers, and reject wrong
ones with feedback that says what is wrong.
Real objects built from the shipped tiny model; each question has right variants and wrong answers."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from check_assertions import fails, passes
from peft import LoraConfig, PeftModel, get_peft_model

from course_utils import (
    load_base_model,
    load_tokenizer,
    shipped_adapter,
)
from course_utils.grading.checks import (
    given_adapter,
)


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




# ---------------------------------------------------------------------------------------- exercise 2
def test_ex02_q1(saved, capsys):
    model, folder = saved
    passes("ex02_q1", capsys, reloaded=reload(folder), folder=folder, reference=model)
    passes("ex02_q1", capsys, reloaded=reload(str(folder), adapter_name="mine"), folder=folder, reference=model)
    fails("ex02_q1", "require grad, like the model you built", reloaded=copy.deepcopy(model), folder=folder,
          reference=model)
    fails("ex02_q1", "very model you saved", reloaded=model, folder=folder, reference=model)
    fails("ex02_q1", "does not hold the weights", reloaded=lora(init=True), folder=folder, reference=model)
    fails("ex02_q1", "does not hold the weights", reloaded=reload(shipped_adapter("spanish_sentiment")),
          folder=folder, reference=model)
    fails("ex02_q1", "not a PeftModel", reloaded=load_base_model(), folder=folder, reference=model)
    fails("ex02_q1", "require grad", reloaded=reload(folder, is_trainable=True), folder=folder, reference=model)
    own = given_adapter(folder.parent / "own", seed=2)  # wrapping its base again would change the fixture's
    fails("ex02_q1", "shares weights", reloaded=PeftModel.from_pretrained(own.get_base_model(), str(folder.parent / "own"),
                                                                           adapter_name="again"),
          folder=folder.parent / "own", reference=own)


def _multi():
    return get_peft_model(load_base_model(), LoraConfig(r=8, target_modules=["c_attn"]))


def test_ex02_q2(saved, capsys):
    model, folder = saved
    ok = {"folder": folder, "reference": model}
    good = _multi()
    good.load_adapter(folder, adapter_name="reloaded")
    good.set_adapter("reloaded")
    passes("ex02_q2", capsys, multi=good, given=good, **ok)
    positional = _multi()
    positional.load_adapter(str(folder), "reloaded")
    positional.base_model.set_adapter("reloaded")
    passes("ex02_q2", capsys, multi=positional, given=positional, **ok)
    given = _multi()
    rebuilt = reload(folder, adapter_name="reloaded")
    fails("ex02_q2", "is a new model", multi=rebuilt, given=given, **ok)
    inactive = _multi()
    inactive.load_adapter(folder, adapter_name="reloaded")
    fails("ex02_q2", "active adapter is 'default'.*does not activate", multi=inactive, given=inactive, **ok)
    other_name = _multi()
    other_name.load_adapter(folder, adapter_name="mine")
    fails("ex02_q2", r"no adapter named 'reloaded' \(it has \['default', 'mine'\]\)", multi=other_name,
          given=other_name, **ok)
    nothing = _multi()
    fails("ex02_q2", "no adapter named 'reloaded'", multi=nothing, given=nothing, **ok)
    wrong_weights = _multi()
    wrong_weights.add_adapter("reloaded", LoraConfig(r=8, target_modules=["c_attn", "c_fc"], init_lora_weights=False))
    wrong_weights.set_adapter("reloaded")
    fails("ex02_q2", "does not hold the weights", multi=wrong_weights, given=wrong_weights, **ok)
    fails("ex02_q2", "not a PeftModel", multi=load_base_model(), given=None, **ok)


def test_ex02_q3(saved, capsys):
    model, folder = saved
    spanish = shipped_adapter("spanish_sentiment")
    passes("ex02_q3", capsys, trainable=reload(spanish, is_trainable=True))
    by_hand = reload(spanish, adapter_name="es")
    for name, p in by_hand.named_parameters():
        p.requires_grad = "lora_" in name
    passes("ex02_q3", capsys, trainable=by_hand)
    fails("ex02_q3", "0 LoRA parameters require grad", trainable=reload(spanish))
    everything = reload(spanish, is_trainable=True)
    for p in everything.parameters():
        p.requires_grad = True
    fails("ex02_q3", "base-model parameters require grad", trainable=everything)
    fails("ex02_q3", "does not hold the weights of the shipped", trainable=copy.deepcopy(model))
    fails("ex02_q3", "does not hold the weights of the shipped", trainable=reload(folder, is_trainable=True))
    fails("ex02_q3", "does not hold the weights of the shipped",
          trainable=reload(shipped_adapter("english_ner"), is_trainable=True))
    half = reload(spanish, is_trainable=True)
    next(p for n, p in half.named_parameters() if "lora_B" in n).requires_grad = False
    fails("ex02_q3", "1 of the 32 LoRA tensors are still frozen", trainable=half)


def test_ex02_q4(saved, capsys, tok):
    from course_utils import compare_logits

    model, folder = saved
    ok = {"folder": folder, "reference": model}

    def by_compare(saved, candidate):
        return compare_logits(saved, candidate, tok).ok and not compare_logits(load_base_model(), saved, tok).ok

    def by_disable(saved, candidate):
        same = compare_logits(saved, candidate, tok).ok
        with saved.disable_adapter():
            base = load_base_model()
            matters = not compare_logits(base, saved, tok).ok
        matters = matters or not compare_logits(load_base_model(), saved, tok).ok
        return bool(np.bool_(same and matters))

    passes("ex02_q4", capsys, proves_reload=by_compare, **ok)
    passes("ex02_q4", capsys, proves_reload=by_disable, **ok)
    fails("ex02_q4", "True for the plain base model", proves_reload=lambda s, c: True, **ok)
    fails("ex02_q4", "False for a real reload", proves_reload=lambda s, c: False, **ok)
    fails("ex02_q4", "not a LogitCheck", proves_reload=lambda s, c: compare_logits(s, c, tok), **ok)
    fails("ex02_q4", "saved adapter is untrained",
          proves_reload=lambda s, c: compare_logits(s, c, tok).ok, **ok)
    fails("ex02_q4", "True for a fresh, untrained adapter",
          proves_reload=lambda s, c: isinstance(c, type(s)) or compare_logits(s, c, tok).ok, **ok)
    fails("ex02_q4", "should be a function", proves_reload=True, **ok)


