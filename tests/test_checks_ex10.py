"""Exercise 10 (another architecture, serving engines): its checks accept right answers, and reject wrong ones with
feedback that says what is wrong. The vLLM-refused adapter and the GPT-2 adapter for llama.cpp are made by the
exercise's own recipes (seeded shapes, secret weights) and snapshotted with ``record_given`` as the given cells do."""
from __future__ import annotations

import json
import shutil

import gguf
import numpy as np
import pytest
import torch
from check_assertions import AlwaysEqual, fails, passes, scaled_lora_b
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file

from course_utils import load_base_model, shipped_adapter
from course_utils.adapter_format import CONFIG_FILE, WEIGHTS_FILE
from course_utils.gguf_export import export_gguf
from course_utils.grading.evidence import evidence_root, record_given
from course_utils.grading.questions.ex10 import (
    blocked_adapter,
    blocked_plan,
    gguf_adapter,
    llama_plan,
    llama_task,
)
from course_utils.learner import learner_seed
from course_utils.safe_ops import merge_to_folder

PLAN = llama_plan(learner_seed("ci"))
DORA_LEARNER = "ana"   # whose Q2 adapter is DoRA (ci's keeps lm_head in modules_to_save)


def llama():
    return load_base_model(arch="llama")


def trained(model, seed=0):
    """``model`` with its trainable tensors moved, as a few training steps would."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    return model


def adapter(r=PLAN["r"], targets=PLAN["targets"], **kwargs):
    return trained(get_peft_model(llama(), LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(targets), **kwargs)))


def saved(model, folder):
    model.save_pretrained(folder)
    return folder


# ============================================================================ Q1
def test_ex10_q1_the_task_is_seeded_in_words():
    r, words = llama_task("ci")
    assert (r, words) == (PLAN["r"], PLAN["words"]) and "_proj" not in words
    assert {llama_task(n) for n in ("ci", "ana", "bob", "carla", "dev", "eve")} != {llama_task("ci")}


def test_ex10_q1_right_answers(tmp_path, capsys):
    model = adapter()
    passes("ex10_q1", capsys, model=model, folder=saved(model, tmp_path / "a"))
    with pytest.warns(UserWarning, match="fan_in_fan_out is set to True"):   # peft sets it back to False
        flipped = adapter(fan_in_fan_out=True)
    passes("ex10_q1", capsys, model=flipped, folder=str(saved(flipped, tmp_path / "b")))
    regex = trained(get_peft_model(llama(), LoraConfig(r=PLAN["r"],
                                                       target_modules=rf".*\.({'|'.join(PLAN['targets'])})$")))
    passes("ex10_q1", capsys, model=regex, folder=saved(regex, tmp_path / "c"))
    passes("ex10_q1", capsys, model=PeftModel.from_pretrained(llama(), tmp_path / "a", adapter_name="mine"),
           folder=tmp_path / "a")


def _gpt2(folder):
    model = trained(get_peft_model(load_base_model(), LoraConfig(r=PLAN["r"], target_modules=["c_attn"],
                                                                 fan_in_fan_out=True)))
    return model, saved(model, folder)


def _gpt2_names(folder):
    model = adapter()
    saved(model, folder)
    config = json.loads((folder / CONFIG_FILE).read_text())
    (folder / CONFIG_FILE).write_text(json.dumps({**config, "target_modules": ["c_attn", "c_proj"]}))
    return model, folder


def _no_weights(folder):
    model = adapter()
    saved(model, folder)
    (folder / WEIGHTS_FILE).unlink()
    return model, folder


def _trained_after_saving(folder):
    model = adapter()
    saved(model, folder)
    return scaled_lora_b(model, 1.1), folder


def _merged(folder):
    model = adapter()
    saved(model, folder / "adapter")
    merged = PeftModel.from_pretrained(llama(), folder / "adapter").merge_and_unload()
    return model, saved(merged, folder / "merged")


def _other_model(folder):
    return adapter(targets=("q_proj", "v_proj")), saved(adapter(), folder)


def _plain(make):
    def answer(folder):
        model = make()
        return model, saved(model, folder)
    return answer


WRONG_Q1 = [
    (_gpt2, "holds a GPT-2 adapter"),
    (_gpt2_names, r"does not load onto load_base_model\(arch='llama'\).*Target modules"),
    (_plain(lambda: adapter(layers_to_transform=[0, 1])), "leaves out 8 of the 16 modules"),
    (_plain(lambda: adapter(targets=("q_proj", "v_proj"))), "leaves out 8 of the 16 modules"),
    (_plain(lambda: adapter(targets=(*PLAN["targets"], "gate_proj"))), "also adapts .*gate_proj"),
    (_plain(lambda: adapter(r=8)), "has rank 8, not the r=6"),
    (_plain(lambda: adapter(rank_pattern={"o_proj": 2})), "o_proj has rank 2, not the r=6"),
    (_plain(lambda: get_peft_model(llama(), LoraConfig(r=PLAN["r"], target_modules=list(PLAN["targets"])))),
     "changes nothing: its LoRA B matrices are zero"),
    (_no_weights, "no adapter_model.safetensors in the folder"),
    (_merged, r"holds a full model \(config.json\)"),
    (_trained_after_saving, r"`model` \(compared with `folder` reloaded\) gives different logits"),
    (_other_model, "`model` does not have the layers of the adapter in `folder`"),
    (lambda f: (llama(), saved(adapter(), f)), "is a LlamaForCausalLM, not a PeftModel"),
    (lambda f: (AlwaysEqual(), saved(adapter(), f)), "should be the PeftModel you saved, not a AlwaysEqual"),
    (lambda f: (adapter(), f / "never_saved"), "nothing was saved at"),
]


@pytest.mark.parametrize(("make", "pattern"), WRONG_Q1)
def test_ex10_q1_wrong_answers(make, pattern, tmp_path):
    model, folder = make(tmp_path)
    fails("ex10_q1", pattern, model=model, folder=folder)


# ============================================================================ Q2
@pytest.fixture(scope="module")
def blocked_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("blocked")
    return blocked_adapter(root / "blocked", "ci"), blocked_adapter(root / "again", "ci")


@pytest.fixture()
def blocked(blocked_folders):
    record_given("ex10_given_vllm", blocked=blocked_folders[0])   # as the given cell does
    return blocked_folders[0]


def merged_into(folder, target, dtype=None):
    merged = PeftModel.from_pretrained(llama(), folder).merge_and_unload()
    return saved(merged if dtype is None else merged.to(dtype), target)


def test_ex10_q2_the_folder_is_seeded_and_its_weights_secret(blocked_folders):
    first, again = (load_file(f / WEIGHTS_FILE) for f in blocked_folders)
    config = json.loads((blocked_folders[0] / CONFIG_FILE).read_text())
    assert config["modules_to_save"] == ["lm_head"] and config["r"] == blocked_plan(learner_seed("ci"))["r"]
    assert sorted(first) == sorted(again) and not any(torch.equal(first[k], again[k]) for k in first)


def test_ex10_q2_right_answers(blocked, tmp_path, capsys):
    passes("ex10_q2", capsys, served=merged_into(blocked, tmp_path / "a"))
    passes("ex10_q2", capsys, served=str(merged_into(blocked, tmp_path / "b", torch.float32)))
    served = merge_to_folder(PeftModel.from_pretrained(llama(), blocked), tmp_path / "c", tmp_path / "kept")
    passes("ex10_q2", capsys, served=served)


def test_ex10_q2_right_answer_for_a_dora_adapter(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_LEARNER", DORA_LEARNER)
    folder = blocked_adapter(tmp_path / "dora", DORA_LEARNER)
    assert json.loads((folder / CONFIG_FILE).read_text())["use_dora"] is True
    record_given("ex10_given_vllm", blocked=folder)
    passes("ex10_q2", capsys, served=merged_into(folder, tmp_path / "merged"))
    fails("ex10_q2", "computes the base model", served=saved(llama(), tmp_path / "base"))


def _without_head(blocked, again, target):
    merged = PeftModel.from_pretrained(llama(), blocked).merge_and_unload()
    with torch.no_grad():
        merged.lm_head.weight.copy_(llama().lm_head.weight)
    return saved(merged, target)


def _missing_head(blocked, again, target):
    merged_into(blocked, target)
    state = load_file(target / "model.safetensors")
    del state["lm_head.weight"]
    save_file(state, target / "model.safetensors", metadata={"format": "pt"})
    return target


def _empty(blocked, again, target):
    target.mkdir()
    return target


WRONG_Q2 = [
    (lambda b, a, t: shutil.copytree(b, t), r"holds an adapter \(adapter_config.json\): vLLM refuses this one"),
    (lambda b, a, t: merged_into(a, t), "`served` gives different logits"),
    (lambda b, a, t: saved(llama(), t), "computes the base model: the adapter was not merged"),
    (_without_head, "keeps the base's lm_head"),
    (lambda b, a, t: merged_into(b, t, torch.bfloat16), r"saved in bfloat16; save the merge in float32\) gives "
                                                         "different logits"),
    (lambda b, a, t: merged_into(b, t, torch.float16), r"saved in float16.* gives different logits"),
    (lambda b, a, t: saved(PeftModel.from_pretrained(load_base_model(), shipped_adapter("spanish_sentiment"))
                           .merge_and_unload(), t), "holds a gpt2 model, not the Llama base"),
    (_missing_head, "does not hold the Llama base's tensors"),
    (_empty, "is empty: nothing was saved there"),
    (lambda b, a, t: t / "never_saved", "nothing was saved at"),
    (lambda b, a, t: PeftModel.from_pretrained(llama(), b).merge_and_unload(), "should be the folder's path"),
]


@pytest.mark.parametrize(("make", "pattern"), WRONG_Q2)
def test_ex10_q2_wrong_answers(make, pattern, blocked, blocked_folders, tmp_path):
    fails("ex10_q2", pattern, served=make(blocked, blocked_folders[1], tmp_path / "served"))


def test_ex10_q2_needs_the_given_cell_and_this_learners_folder(blocked, tmp_path, monkeypatch):
    served = merged_into(blocked, tmp_path / "served")
    monkeypatch.setenv("COURSE_LEARNER", "bob")   # ci's folder graded as bob's
    record_given("ex10_given_vllm", blocked=blocked)
    fails("ex10_q2", "made for another learner", served=served)
    shutil.rmtree(evidence_root() / "ex10_given_vllm")
    fails("ex10_q2", "given cell `ex10_given_vllm` did not run", served=served)


# ============================================================================ Q3
@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return gguf_adapter(root / "tiny", "ci"), gguf_adapter(root / "again", "ci")


@pytest.fixture()
def tiny(tiny_folders):
    record_given("ex10_given_gguf", tiny=tiny_folders[0])
    return tiny_folders[0]


def test_ex10_q3_right_answers(tiny, tmp_path, capsys):
    passes("ex10_q3", capsys, gguf_file=export_gguf(tiny, tmp_path / "a.gguf"))
    passes("ex10_q3", capsys, gguf_file=str(export_gguf(shutil.copytree(tiny, tmp_path / "copy"))))


def _edited(tiny, target, config=None, factor=None):
    folder = shutil.copytree(tiny, target.with_suffix(""))
    if config:
        data = json.loads((folder / CONFIG_FILE).read_text())
        (folder / CONFIG_FILE).write_text(json.dumps({**data, **config}))
    if factor:
        weights = load_file(folder / WEIGHTS_FILE)
        save_file({k: v * factor if "lora_B" in k else v for k, v in weights.items()}, folder / WEIGHTS_FILE)
    return export_gguf(folder, target)


def _not_lora(tiny, again, target):
    writer = gguf.GGUFWriter(target, "gpt2")
    writer.add_tensor("blk.0.attn_qkv.weight", np.zeros((4, 4), dtype=np.float32))
    for write in (writer.write_header_to_file, writer.write_kv_data_to_file, writer.write_tensors_to_file,
                  writer.close):
        write()
    return target


WRONG_Q3 = [
    (lambda t, a, f: export_gguf(a, f), "tensors in `gguf_file` are not the ones saved in `tiny`"),
    (lambda t, a, f: _edited(t, f, factor=1.01), "not the ones saved in `tiny`"),
    (lambda t, a, f: _edited(t, f, config={"lora_alpha": 1}), "adapter.lora.alpha is not the adapter's"),
    (lambda t, a, f: export_gguf(shipped_adapter("spanish_sentiment"), f), "holds 32 tensors, not the 8"),
    (_not_lora, "a GGUF file but not a LoRA adapter"),
    (lambda t, a, f: t / WEIGHTS_FILE, r"is not a GGUF file \("),
    (lambda t, a, f: t, "is a folder: pass the .gguf file"),
    (lambda t, a, f: f, "nothing was saved at"),
    (lambda t, a, f: 7, "should be the .gguf file's path, not a int"),
    (lambda t, a, f: AlwaysEqual(), "should be the .gguf file's path, not a AlwaysEqual"),
]


@pytest.mark.parametrize(("make", "pattern"), WRONG_Q3)
def test_ex10_q3_wrong_answers(make, pattern, tiny, tiny_folders, tmp_path):
    fails("ex10_q3", pattern, gguf_file=make(tiny, tiny_folders[1], tmp_path / "out.gguf"))


def test_ex10_q3_needs_the_given_cell_and_this_learners_folder(tiny, tmp_path, monkeypatch):
    gguf_file = export_gguf(tiny, tmp_path / "a.gguf")
    monkeypatch.setenv("COURSE_LEARNER", "bob")   # ci's folder (rank 4) graded as bob's (rank 8)
    record_given("ex10_given_gguf", tiny=tiny)
    fails("ex10_q3", "made for another learner", gguf_file=gguf_file)
    shutil.rmtree(evidence_root() / "ex10_given_gguf")
    fails("ex10_q3", "given cell `ex10_given_gguf` did not run", gguf_file=gguf_file)
