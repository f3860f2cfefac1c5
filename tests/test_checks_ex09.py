"""Exercise 9 (combining adapters and shipping them): its checks accept right answers, and reject wrong ones with
feedback that says what is wrong. The marked base and the mix are made by the exercise's own recipes (a secret mark,
seeded weights), and so is Q3's teammate run under a simulated ZeRO-3 (a seeded shape, secret weights), recorded with
``record_given`` as the notebook's given cells do."""
from __future__ import annotations

import copy
import shutil

import pytest
import torch
from check_assertions import AlwaysEqual, fails, passes
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file, save_file

from course_utils import compare_logits, load_base_model, load_tokenizer, shipped_adapter, simulate_zero3
from course_utils.adapter_format import CONFIG_FILE
from course_utils.grading.evidence import evidence_root, record_given
from course_utils.grading.questions.ex09 import GATHERED, combo_task, mark_base, zero3_plan, zero3_teammate
from course_utils.learner import learner_seed

W_ES, W_NER = combo_task("ci")


def _given():
    """As the given cell: a base, `sentiment` on it, its base marked and the mark recorded."""
    base = load_base_model()
    sentiment = PeftModel.from_pretrained(base, shipped_adapter("spanish_sentiment"))
    record_given("ex09_given_base", mark=mark_base(sentiment))
    return base, sentiment


def _unloaded(base, sentiment):
    sentiment.unload()
    return sentiment.get_base_model()


def _drifted(base, sentiment):
    sentiment.merge_adapter()
    sentiment.unmerge_adapter()
    return sentiment.unload()


@pytest.mark.parametrize("make", [
    lambda b, s: s.unload(),
    lambda b, s: s.base_model.unload(),
    lambda b, s: (s.unload(), b)[1],   # the given `base`, after unload
    _unloaded,
    lambda b, s: s.merge_and_unload(adapter_names=[]),
    _drifted,   # merged and unmerged: float drift only
])
def test_ex09_q1_right_answers(make, capsys):
    base, sentiment = _given()
    passes("ex09_q1", capsys, clean_base=make(base, sentiment), sentiment=sentiment)


def _reloaded_inside(base, sentiment):
    sentiment.base_model.model = load_base_model()   # a fresh load planted inside
    return sentiment.base_model.model


def _made_again(base, sentiment):
    again = PeftModel.from_pretrained(load_base_model(), shipped_adapter("spanish_sentiment"))
    return again.unload(), again


def _deleted(base, sentiment):
    sentiment.delete_adapter("default")
    return sentiment.base_model.model


def _lora_model(base, sentiment):
    sentiment.unload()
    return sentiment.base_model


def _disabled(base, sentiment):
    with sentiment.disable_adapter():
        return sentiment


WRONG_Q2 = [
    (lambda b, s: s, "still a PeftModel"),
    (_disabled, "still a PeftModel"),
    (lambda b, s: s.base_model.model, "still has 16 LoRA layers .*: they change what it computes"),
    (lambda b, s: s.get_base_model(), "still has 16 LoRA layers"),
    (lambda b, s: b, "still has 16 LoRA layers"),   # `base` was changed in place
    (lambda b, s: s.base_model, "a LoraModel, peft's wrapper"),
    (_lora_model, "a LoraModel, peft's wrapper"),
    (_deleted, "16 LoRA layers .*emptied of their adapter but still wrapping"),
    (lambda b, s: load_base_model(), "not the model underneath `sentiment`: .*not by loading again"),
    (lambda b, s: copy.deepcopy(s).unload(), "a copy of the model underneath `sentiment`, not that model itself"),
    (_reloaded_inside, "a base loaded again took its place"),
    (lambda b, s: s.merge_and_unload(), "merged in, not removed"),
    (lambda b, s: AlwaysEqual(), "should be a model, not a AlwaysEqual"),
]


@pytest.mark.parametrize(("make", "pattern"), WRONG_Q2)
def test_ex09_q1_wrong_answers(make, pattern):
    base, sentiment = _given()
    fails("ex09_q1", pattern, clean_base=make(base, sentiment), sentiment=sentiment)


def test_ex09_q1_sentiment_made_again_fails_and_the_mark_changes_no_output():
    base, sentiment = _given()
    assert compare_logits(load_base_model(), sentiment.unload(), load_tokenizer()).max_abs_diff == 0.0
    base, sentiment = _given()
    clean_base, again = _made_again(base, sentiment)
    fails("ex09_q1", "a base loaded again took its place .*made again", clean_base=clean_base, sentiment=again)
    shutil.rmtree(evidence_root() / "ex09_given_base")
    fails("ex09_q1", "given cell `ex09_given_base` did not run", clean_base=sentiment.unload(), sentiment=sentiment)


@pytest.fixture(scope="module")
def combined(tmp_path_factory):
    root = tmp_path_factory.mktemp("combined")
    two = PeftModel.from_pretrained(load_base_model(), shipped_adapter("spanish_sentiment"), adapter_name="es")
    two.load_adapter(shipped_adapter("english_ner"), adapter_name="ner")
    two.add_weighted_adapter(["es", "ner"], [W_ES, W_NER], adapter_name="cat", combination_type="cat")
    two.add_weighted_adapter(["es", "ner"], [1.0, 1.0], adapter_name="lesson", combination_type="cat")
    two.add_weighted_adapter(["es", "ner"], [W_NER, W_ES], adapter_name="swapped", combination_type="cat")
    for kind in ("linear", "svd"):
        two.add_weighted_adapter(["es", "ner"], [W_ES, W_NER], adapter_name=kind, combination_type=kind)
    two.add_weighted_adapter(["es", "ner"], [W_ES, W_NER], adapter_name="default", combination_type="cat")
    two.save_pretrained(root / "all", selected_adapters=["cat", "lesson", "swapped", "linear", "svd", "es"])
    two.save_pretrained(root / "at_root", selected_adapters=["default"])
    two.save_pretrained(root / "pickled", selected_adapters=["cat"], safe_serialization=False)
    scaled = PeftModel.from_pretrained(load_base_model(), shipped_adapter("spanish_sentiment"), adapter_name="es")
    scaled.load_adapter(shipped_adapter("english_ner"), adapter_name="ner")
    with torch.no_grad():
        for name, p in scaled.named_parameters():
            if "lora_B" in name:
                p.mul_(W_ES if ".es." in name else W_NER)
    scaled.add_weighted_adapter(["es", "ner"], [1.0, 1.0], adapter_name="by_hand", combination_type="cat")
    scaled.save_pretrained(root / "scaled", selected_adapters=["by_hand"])
    return root, two


def test_ex09_q2_combined_adapter_right_answers(combined, capsys):
    root, _ = combined
    passes("ex09_q2", capsys, combo_folder=root / "all" / "cat")
    passes("ex09_q2", capsys, combo_folder=str(root / "at_root"))
    passes("ex09_q2", capsys, combo_folder=root / "pickled" / "cat")
    passes("ex09_q2", capsys, combo_folder=root / "scaled" / "by_hand")


@pytest.mark.parametrize(("where", "pattern"), [
    ("all", r"subfolder \(cat, es, lesson, linear, svd, swapped/?\)"),
    ("all/lesson", "does not compute .* × spanish_sentiment"),   # the lesson's weights
    ("all/swapped", "does not compute"),
    ("all/linear", "does not compute"),
    ("all/svd", "does not compute"),
    ("all/es", "does not compute"),
    ("missing", "nothing was saved"),
])
def test_ex09_q2_combined_adapter_wrong_folders(where, pattern, combined):
    root, _ = combined
    fails("ex09_q2", pattern, combo_folder=root / where)


def test_ex09_q2_combined_adapter_wrong_answers(combined, tmp_path, monkeypatch):
    root, two = combined
    fails("ex09_q2", "does not compute", combo_folder=shipped_adapter("english_ner"))
    fails("ex09_q2", "should be the folder's path .*not a PeftModel", combo_folder=two)
    fails("ex09_q2", "should be the folder's path", combo_folder=AlwaysEqual())
    (tmp_path / "config_only").mkdir()
    shutil.copy(root / "all" / "cat" / CONFIG_FILE, tmp_path / "config_only")
    fails("ex09_q2", "no adapter_model.safetensors in the folder", combo_folder=tmp_path / "config_only")
    monkeypatch.setenv("COURSE_LEARNER", "bob")   # ci's mix graded as bob's
    assert combo_task("bob") != (W_ES, W_NER)
    fails("ex09_q2", "does not compute", combo_folder=root / "all" / "cat")


# ---------------------------------------------------------------------------- Q3
PLAN = zero3_plan(learner_seed("ci"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("zero3")
    return zero3_teammate(root / "teammate", "ci"), zero3_teammate(root / "again", "ci")


@pytest.fixture()
def teammate(runs):
    record_given("ex09_given_zero3", teammate=runs[0])   # as the given cell does
    return runs[0]


def _rebuilt(teammate):
    """The teammate's adapter config on a fresh base: the model the gathered state dict fits."""
    return get_peft_model(load_base_model(), LoraConfig.from_pretrained(teammate / "adapter"))


def _gathered(teammate):
    return load_file(teammate / GATHERED)


def _state_dict_route(teammate, out, **kwargs):
    _rebuilt(teammate).save_pretrained(out, state_dict=_gathered(teammate), **kwargs)
    return out


def _set_then_save(teammate, out):
    model = _rebuilt(teammate)
    set_peft_model_state_dict(model, get_peft_model_state_dict(model, state_dict=_gathered(teammate)))
    model.save_pretrained(out)
    return out


def _by_hand(teammate, out):
    """Config copied, the LoRA tensors written under peft's saved names: no PeftModel at all."""
    out.mkdir()
    shutil.copy(teammate / "adapter" / CONFIG_FILE, out)
    lora = {k.replace(".default.", "."): v for k, v in _gathered(teammate).items() if "lora_" in k}
    save_file(lora, out / "adapter_model.safetensors", metadata={"format": "pt"})
    return out


def _names_kept(teammate, out):
    """The gathered LoRA tensors written as they are, the adapter's name in their keys: peft's loader accepts that."""
    out = _by_hand(teammate, out)
    save_file({k: v for k, v in _gathered(teammate).items() if "lora_" in k}, out / "adapter_model.safetensors",
              metadata={"format": "pt"})
    return out


def test_ex09_q3_the_run_is_seeded_and_its_weights_secret(runs):
    first, again = (_gathered(r) for r in runs)
    assert sorted(first) == sorted(again)
    assert not any(torch.equal(first[k], again[k]) for k in first if "lora_B" in k)
    assert {k: v.shape for k, v in load_file(runs[0] / "adapter" / "adapter_model.safetensors").items()}
    assert all(v.numel() == 0 for v in load_file(runs[0] / "adapter" / "adapter_model.safetensors").values())
    assert any(zero3_plan(s) != PLAN for s in range(20))   # the shape is per learner


@pytest.mark.parametrize("save", [_state_dict_route, _set_then_save, _by_hand, _names_kept])
def test_ex09_q3_right_answers(save, teammate, tmp_path, capsys):
    passes("ex09_q3", capsys, fixed_folder=save(teammate, tmp_path / "fixed"))


def _saved_as_is(teammate, again, out):
    model = _rebuilt(teammate)
    simulate_zero3(model)
    model.save_pretrained(out)   # the partitioned model saved again: shape [0]
    return out


def _fresh(teammate, again, out):
    _rebuilt(teammate).save_pretrained(out)
    return out


def _full_model(teammate, again, out):
    model = _rebuilt(teammate)
    set_peft_model_state_dict(model, get_peft_model_state_dict(model, state_dict=_gathered(teammate)))
    model.merge_and_unload().save_pretrained(out)
    return out


def _no_prefix(teammate, again, out):
    out = _by_hand(teammate, out)
    lora = {k.removeprefix("base_model.model."): v for k, v in load_file(out / "adapter_model.safetensors").items()}
    save_file(lora, out / "adapter_model.safetensors", metadata={"format": "pt"})   # names peft does not find
    return out


def _whole_state(teammate, again, out):
    out = _by_hand(teammate, out)
    save_file(_gathered(teammate), out / "adapter_model.safetensors", metadata={"format": "pt"})
    return out


def _bf16(teammate, again, out):
    model = _rebuilt(teammate)
    model.save_pretrained(out, state_dict={k: v.to(torch.bfloat16) for k, v in _gathered(teammate).items()})
    return out


def _wrong_config(teammate, again, out):
    out = _by_hand(teammate, out)
    config = LoraConfig.from_pretrained(out)
    config.r, config.lora_alpha = 2 * config.r, 4 * config.r   # the right tensors, another rank in the config
    config.save_pretrained(out)
    return out


WRONG_Q3 = [
    (lambda t, a, o: t / "adapter", r"of the \d+ saved tensors have shape \[0\]"),   # their own save
    (_saved_as_is, r"have shape \[0\].*state_dict="),
    (lambda t, a, o: _empty(t, o), "holds no tensors at all"),
    (lambda t, a, o: _state_dict_route(a, o), "does not hold the teammate's weights"),   # the run made again
    (_fresh, "computes the base model: its LoRA B matrices are zero"),
    (_no_prefix, "computes the base model: no saved tensor reached a LoRA layer"),
    (_whole_state, "also holds \\d+ weights of the base model .*whole gathered state dict"),
    (_bf16, "does not hold the teammate's weights .*rounded"),
    (lambda t, a, o: _state_dict_route(t, o, safe_serialization=False), "adapter_model.bin"),
    (_full_model, "a full model"),
    (lambda t, a, o: shipped_adapter("english_ner"), "other LoRA layers than the teammate's|does not hold"),
    (_wrong_config, "does not load onto the course's base model: RuntimeError"),
    (lambda t, a, o: _in_subfolder(t, o), r"subfolder \(fixed/\)"),
    (lambda t, a, o: o / "never_saved", "nothing was saved"),
    (lambda t, a, o: _rebuilt(t), "should be the folder's path .*not a PeftModel"),
]


def _empty(teammate, out):
    _rebuilt(teammate).save_pretrained(out, state_dict={})   # Trainer's save without the DeepSpeed setting
    return out


def _in_subfolder(teammate, out):
    model = get_peft_model(load_base_model(), LoraConfig.from_pretrained(teammate / "adapter"), adapter_name="fixed")
    gathered = {k.replace(".default.", ".fixed."): v for k, v in _gathered(teammate).items()}
    model.save_pretrained(out, state_dict=gathered)
    return out


@pytest.mark.parametrize(("make", "pattern"), WRONG_Q3)
def test_ex09_q3_wrong_answers(make, pattern, teammate, runs, tmp_path):
    fails("ex09_q3", pattern, fixed_folder=make(teammate, runs[1], tmp_path / "out"))


def test_ex09_q3_needs_the_given_cell_and_this_learners_run(teammate, tmp_path, monkeypatch):
    fixed = _state_dict_route(teammate, tmp_path / "fixed")
    monkeypatch.setenv("COURSE_LEARNER", "bob")   # ci's run graded as bob's
    assert zero3_plan(learner_seed("bob")) != PLAN
    record_given("ex09_given_zero3", teammate=teammate)
    fails("ex09_q3", "made for another learner", fixed_folder=fixed)
    shutil.rmtree(evidence_root() / "ex09_given_zero3")
    fails("ex09_q3", "given cell `ex09_given_zero3` did not run", fixed_folder=fixed)
