"""Exercise 7 (versions, sharing, combining): its checks accept right answers, and reject wrong ones with
feedback that says what is wrong. The renamed folder is made by the exercise's own recipe (seeded layout,
secret weights) and snapshotted with ``record_given`` as the notebook's given cell does."""
from __future__ import annotations

import copy
import shutil

import pytest
import torch
from check_assertions import AlwaysEqual, fails, passes, scaled_lora_b
from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file, save_file

from course_utils import compare_logits, load_base_model, load_tokenizer, shipped_adapter
from course_utils.adapter_format import CONFIG_FILE, WEIGHTS_FILE
from course_utils.grading.evidence import evidence_root, record_given
from course_utils.grading.questions.ex07 import combo_task, mark_base, renamed_colleague, renamed_plan
from course_utils.learner import learner_seed

PREFIX = renamed_plan(learner_seed("ci"))["prefix"]
W_ES, W_NER = combo_task("ci")
ANY_PREFIX = {r"^\w+\.transformer\.": "transformer."}


def load(folder, **kwargs):
    return PeftModel.from_pretrained(load_base_model(), folder, **kwargs)


def mapped(folder, **kwargs):
    return load(folder, key_mapping=ANY_PREFIX, **kwargs)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("theirs")
    return renamed_colleague(root / "theirs", "ci"), renamed_colleague(root / "again", "ci")


@pytest.fixture()
def theirs(folders):
    record_given("ex07_given_renamed", theirs=folders[0])   # as the given cell does
    return folders[0]


def _renamed_back(folder, target):
    shutil.copytree(folder, target)
    weights = load_file(folder / WEIGHTS_FILE)
    save_file({k.replace(f".{PREFIX}", ".", 1): v for k, v in weights.items()}, target / WEIGHTS_FILE,
              metadata={"format": "pt"})
    return target


def _by_hand(folder):
    model = get_peft_model(load_base_model(), LoraConfig.from_pretrained(folder))
    set_peft_model_state_dict(model, {k.replace(f".{PREFIX}", ".", 1): v
                                      for k, v in load_file(folder / WEIGHTS_FILE).items()})
    return model


def test_ex07_q1_the_folder_is_seeded_and_its_weights_secret(folders):
    first, again = (load_file(f / WEIGHTS_FILE) for f in folders)
    assert sorted(first) == sorted(again) and all(k.startswith(f"base_model.model.{PREFIX}") for k in first)
    assert not any(torch.equal(first[k], again[k]) for k in first if "lora_B" in k)


def test_ex07_q1_right_answers(theirs, tmp_path, capsys):
    passes("ex07_q1", capsys, repaired=mapped(theirs))
    passes("ex07_q1", capsys, repaired=load(theirs, adapter_name="theirs",
                                            key_mapping={rf"^{PREFIX}transformer\.": "transformer."}))
    passes("ex07_q1", capsys, repaired=load(_renamed_back(theirs, tmp_path / "fixed")))
    passes("ex07_q1", capsys, repaired=_by_hand(theirs))
    passes("ex07_q1", capsys, repaired=copy.deepcopy(mapped(theirs, is_trainable=True)))


def _quiet(make):
    with pytest.warns(UserWarning, match="missing adapter keys"):
        return make()


def _given_state(folder, other):
    fresh = get_peft_model(load_base_model(), LoraConfig.from_pretrained(folder))
    fresh.load_state_dict(mapped(other).state_dict())
    return fresh



def _changed_base(folder):
    model = mapped(folder)
    with torch.no_grad():
        model.base_model.model.transformer.wte.weight.mul_(1.01)
    return model


class Prefixed(torch.nn.Module):
    """The base under the colleague's prefix, so that their module paths match."""

    def __init__(self, base, prefix):
        super().__init__()
        setattr(self, prefix, base)
        self.prefix, self.config = prefix, base.config

    def forward(self, *args, **kwargs):
        return getattr(self, self.prefix)(*args, **kwargs)


WRONG_Q1 = [
    (lambda f, a: _quiet(lambda: load(f)), "LoRA B matrices of `repaired` are zero"),
    (lambda f, a: copy.deepcopy(_quiet(lambda: load(f))).requires_grad_(False), "LoRA B matrices .* are zero"),
    (lambda f, a: _quiet(lambda: load(f, key_mapping={r"^model\.transformer\.": "transformer."})),   # the lesson's
     "LoRA B matrices .* are zero"),
    (lambda f, a: get_peft_model(load_base_model(), LoraConfig.from_pretrained(f)), "LoRA B matrices .* are zero"),
    (lambda f, a: mapped(a), "does not hold the tensors saved in `theirs`"),   # the same seed, run again
    (lambda f, a: _given_state(f, a), "does not hold the tensors saved"),        # another model's state_dict
    (lambda f, a: scaled_lora_b(mapped(f), 1.01), "does not hold the tensors saved"),
    (lambda f, a: _changed_base(f), "base model is not the course's base model"),
    (lambda f, a: load_base_model(), "not a PeftModel"),
    (lambda f, a: mapped(f).merge_and_unload(), "not a PeftModel"),
    (lambda f, a: AlwaysEqual(), "not a PeftModel"),
    (lambda f, a: PeftModel.from_pretrained(Prefixed(load_base_model(), PREFIX.rstrip(".")), f),   # their layout
     f"a PeftModel around a model that is not the course's base model .*under `base_model.model.{PREFIX}"),
]


@pytest.mark.parametrize(("make", "pattern"), WRONG_Q1)
def test_ex07_q1_wrong_answers(make, pattern, theirs, folders):
    fails("ex07_q1", pattern, repaired=make(theirs, folders[1]))


def test_ex07_q1_needs_the_given_cell_and_this_learners_folder(theirs, monkeypatch):
    repaired = mapped(theirs)
    monkeypatch.setenv("COURSE_LEARNER", "bob")   # ci's folder graded as bob's
    record_given("ex07_given_renamed", theirs=theirs)
    fails("ex07_q1", "made for another learner", repaired=repaired)
    shutil.rmtree(evidence_root() / "ex07_given_renamed")
    fails("ex07_q1", "given cell `ex07_given_renamed` did not run", repaired=repaired)


def _given():
    """As the given cell: a base, `sentiment` on it, its base marked and the mark recorded."""
    base = load_base_model()
    sentiment = PeftModel.from_pretrained(base, shipped_adapter("spanish_sentiment"))
    record_given("ex07_given_base", mark=mark_base(sentiment))
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
def test_ex07_q2_right_answers(make, capsys):
    base, sentiment = _given()
    passes("ex07_q2", capsys, clean_base=make(base, sentiment), sentiment=sentiment)


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
def test_ex07_q2_wrong_answers(make, pattern):
    base, sentiment = _given()
    fails("ex07_q2", pattern, clean_base=make(base, sentiment), sentiment=sentiment)


def test_ex07_q2_sentiment_made_again_fails_and_the_mark_changes_no_output():
    base, sentiment = _given()
    assert compare_logits(load_base_model(), sentiment.unload(), load_tokenizer()).max_abs_diff == 0.0
    base, sentiment = _given()
    clean_base, again = _made_again(base, sentiment)
    fails("ex07_q2", "a base loaded again took its place .*made again", clean_base=clean_base, sentiment=again)
    shutil.rmtree(evidence_root() / "ex07_given_base")
    fails("ex07_q2", "given cell `ex07_given_base` did not run", clean_base=sentiment.unload(), sentiment=sentiment)


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


def test_ex07_q3_combined_adapter_right_answers(combined, capsys):
    root, _ = combined
    passes("ex07_q3", capsys, combo_folder=root / "all" / "cat")
    passes("ex07_q3", capsys, combo_folder=str(root / "at_root"))
    passes("ex07_q3", capsys, combo_folder=root / "pickled" / "cat")
    passes("ex07_q3", capsys, combo_folder=root / "scaled" / "by_hand")


@pytest.mark.parametrize(("where", "pattern"), [
    ("all", r"subfolder \(cat, es, lesson, linear, svd, swapped/?\)"),
    ("all/lesson", "does not compute .* × spanish_sentiment"),   # the lesson's weights
    ("all/swapped", "does not compute"),
    ("all/linear", "does not compute"),
    ("all/svd", "does not compute"),
    ("all/es", "does not compute"),
    ("missing", "nothing was saved"),
])
def test_ex07_q3_combined_adapter_wrong_folders(where, pattern, combined):
    root, _ = combined
    fails("ex07_q3", pattern, combo_folder=root / where)


def test_ex07_q3_combined_adapter_wrong_answers(combined, tmp_path, monkeypatch):
    root, two = combined
    fails("ex07_q3", "does not compute", combo_folder=shipped_adapter("english_ner"))
    fails("ex07_q3", "should be the folder's path .*not a PeftModel", combo_folder=two)
    fails("ex07_q3", "should be the folder's path", combo_folder=AlwaysEqual())
    (tmp_path / "config_only").mkdir()
    shutil.copy(root / "all" / "cat" / CONFIG_FILE, tmp_path / "config_only")
    fails("ex07_q3", "no adapter_model.safetensors in the folder", combo_folder=tmp_path / "config_only")
    monkeypatch.setenv("COURSE_LEARNER", "bob")   # ci's mix graded as bob's
    assert combo_task("bob") != (W_ES, W_NER)
    fails("ex07_q3", "does not compute", combo_folder=root / "all" / "cat")


def test_ex07_q1_the_folder_repaired_in_place_passes_and_saved_over_fails(folders, tmp_path, capsys):
    theirs = shutil.copytree(folders[0], tmp_path / "theirs")
    record_given("ex07_given_renamed", theirs=theirs)
    weights = load_file(theirs / WEIGHTS_FILE)   # the lesson's other fix: rename the keys once, save again
    save_file({k.replace(f".{PREFIX}", ".", 1): v for k, v in weights.items()}, theirs / WEIGHTS_FILE,
              metadata={"format": "pt"})
    passes("ex07_q1", capsys, repaired=load(theirs))
    get_peft_model(load_base_model(), LoraConfig.from_pretrained(theirs)).save_pretrained(theirs)
    fails("ex07_q1", "LoRA B matrices of `repaired` are zero", repaired=load(theirs))
