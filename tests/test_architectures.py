"""The helpers on both shipped bases: GPT-2 (Conv1D layers, ``c_attn``, a tied head) and Llama (``nn.Linear``,
``q_proj``/``v_proj``, an untied head). Each model and adapter is built once per architecture (module fixtures)."""
import json
import warnings

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from course_utils import storage
from course_utils.adapter_format import CONFIG_FILE, WEIGHTS_FILE, read_safetensors_header, tensor_entries
from course_utils.assets import course_model
from course_utils.diagnosis import diagnose
from course_utils.files import list_files, tensor_table
from course_utils.models import load_base_model, load_tokenizer
from course_utils.roundtrip import compare_logits, logits_of, sample_batch
from course_utils.safe_ops import merge_to_folder, safe_save
from course_utils.target_modules import linear_module_names

# What differs between the two architectures, as a lesson would tabulate it.
TABLE = {
    "gpt2": dict(linear_names=["c_attn", "c_fc", "c_proj"], targets=["c_attn"], fan_in_fan_out=True, tied_head=True,
                 layer_path="transformer.h.0.attn.c_attn"),
    "llama": dict(linear_names=["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"],
                  targets=["q_proj", "v_proj"], fan_in_fan_out=False, tied_head=False,
                  layer_path="model.layers.0.self_attn.q_proj"),
}
FAN_IN_FAN_OUT_WARNING = "fan_in_fan_out is set to False but the target module is `Conv1D`"
R = 8


@pytest.fixture(scope="module", params=sorted(TABLE))
def arch(request):
    return request.param


@pytest.fixture(scope="module")
def base(arch):
    return load_base_model(arch=arch)


@pytest.fixture(scope="module")
def tok(arch):
    return load_tokenizer(arch=arch)


@pytest.fixture(scope="module")
def adapted(arch):
    """A LoRA model with non-zero B (so it changes the logits), the warnings its creation raised, its folder."""
    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = get_peft_model(load_base_model(arch=arch), LoraConfig(
            r=R, lora_alpha=2 * R, target_modules=TABLE[arch]["targets"], task_type="CAUSAL_LM", init_lora_weights=False))
    return model.eval(), [str(w.message) for w in caught]


@pytest.fixture(scope="module")
def saved(adapted, tmp_path_factory):
    return safe_save(adapted[0], tmp_path_factory.mktemp("adapter") / "adapter")


def _data_bytes(path) -> int:
    """Bytes of tensor data in a safetensors file, from its header."""
    return sum(e["data_offsets"][1] - e["data_offsets"][0] for e in tensor_entries(read_safetensors_header(path)).values())


def _row(base, adapted, folder) -> dict:
    config = json.loads((folder / CONFIG_FILE).read_text())
    return dict(linear_names=linear_module_names(base), targets=sorted(config["target_modules"]),
                fan_in_fan_out=config["fan_in_fan_out"],
                tied_head=base.lm_head.weight.data_ptr() == base.get_input_embeddings().weight.data_ptr(),
                layer_path=tensor_table(folder / WEIGHTS_FILE)[0][0].removeprefix("base_model.model.").rsplit(".lora_", 1)[0])


def test_what_differs_between_the_architectures(arch, base, adapted, saved):
    assert _row(base, adapted[0], saved) == TABLE[arch]
    assert (base.lm_head.weight is base.get_input_embeddings().weight) == TABLE[arch]["tied_head"]
    # peft turns fan_in_fan_out on, with a warning, only for GPT-2's Conv1D layers.
    assert any(FAN_IN_FAN_OUT_WARNING in w for w in adapted[1]) == TABLE[arch]["fan_in_fan_out"]
    assert "lm_head" in linear_module_names(base, include_output_layer=True)


def test_config_names_differ_but_the_standard_ones_answer_on_both(arch, base):
    cfg = base.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size) == (4, 128, 1024)
    assert hasattr(cfg, "n_layer") == (arch == "gpt2")


def test_storage_counts_match_the_saved_files(arch, base, adapted, saved):
    model = adapted[0]
    targets = TABLE[arch]["targets"]
    trainable, _ = model.get_nb_trainable_parameters()
    assert storage.lora_parameter_count(base, R, targets) == trainable
    assert storage.adapter_bytes(base, R, targets) == _data_bytes(saved / WEIGHTS_FILE)
    shipped = f"{course_model(arch)}/model.safetensors"
    assert storage.full_model_bytes(base) == _data_bytes(shipped)
    # On meta, from the config alone, the same count as the loaded model.
    assert sum(p.numel() for p in storage.as_model(base.config).parameters()) == base.num_parameters()
    # A tied head is one tensor: the checkpoint has no lm_head entry for GPT-2, its own for Llama.
    assert ("lm_head.weight" in read_safetensors_header(shipped)) != TABLE[arch]["tied_head"]


def test_storage_names_each_models_own_targets(arch, base):
    with pytest.raises(ValueError, match=f"use names such as {', '.join(TABLE[arch]['linear_names'])} for this "):
        storage.target_shapes(base, ["no_such_layer"])
    other = "llama" if arch == "gpt2" else "gpt2"
    with pytest.raises(ValueError, match="not found in the model"):
        storage.lora_parameter_count(base, R, TABLE[other]["targets"])
    defaults = storage.default_targets(base)
    assert defaults == (storage.DEFAULT_TARGETS if arch == "gpt2" else tuple(TABLE[arch]["linear_names"]))
    assert "adapter bytes" in storage.rank_explorer(base).children[2].value


def test_safe_save_then_reload_gives_the_same_logits(arch, adapted, saved, tok):
    assert sorted(list_files(saved)) == ["README.md", CONFIG_FILE, WEIGHTS_FILE]
    assert len(tensor_table(saved / WEIGHTS_FILE)) == 2 * 4 * len(TABLE[arch]["targets"])
    reloaded = PeftModel.from_pretrained(load_base_model(arch=arch), saved)
    check = compare_logits(adapted[0], reloaded, tok)
    assert check.ok and check.max_abs_diff == 0.0
    # The adapter matters: the plain base gives other logits (so the check above can fail).
    assert not compare_logits(adapted[0], load_base_model(arch=arch), tok).ok


def test_merge_to_folder_then_reload_gives_the_same_logits(arch, saved, tok, tmp_path):
    model = PeftModel.from_pretrained(load_base_model(arch=arch), saved)
    before = logits_of(model, sample_batch(tok))
    merged_dir = merge_to_folder(model, tmp_path / "merged", tmp_path / "adapters")
    assert CONFIG_FILE not in list_files(merged_dir)
    # The merged checkpoint is the base's size: the LoRA weights went into the base's matrices.
    assert list_files(merged_dir)["model.safetensors"] == list_files(course_model(arch))["model.safetensors"]
    merged = load_base_model(str(merged_dir))
    assert (merged.lm_head.weight is merged.get_input_embeddings().weight) == TABLE[arch]["tied_head"]
    assert compare_logits(model, merged, tok, atol=1e-4).ok
    assert torch.equal(logits_of(model, sample_batch(tok)), before)  # the PeftModel itself stays unmerged
    again = PeftModel.from_pretrained(load_base_model(arch=arch), tmp_path / "adapters")
    assert compare_logits(model, again, tok).max_abs_diff == 0.0


def test_diagnose_on_its_own_base_and_on_the_other(arch, saved):
    assert diagnose(saved).ok
    assert diagnose(saved, base_model=course_model(arch)).ok
    other = "llama" if arch == "gpt2" else "gpt2"
    report = diagnose(saved, base_model=course_model(other))
    assert not report.ok
    assert "made for another architecture" in report.problems[0]
    assert TABLE[arch]["layer_path"] in str(report)


def test_diagnose_finds_added_tokens_in_the_embeddings_and_the_head(arch, tmp_path):
    """With an untied head, resizing changes two matrices; the adapter saves both, and diagnose names both."""
    model = load_base_model(arch=arch)
    model.resize_token_embeddings(1026, mean_resizing=False)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=TABLE[arch]["targets"]))
    safe_save(peft_model, tmp_path / "a", save_embedding_layers=True)
    report = diagnose(tmp_path / "a", base_model=course_model(arch))
    assert len(report.problems) == 1
    embeddings = "transformer.wte" if arch == "gpt2" else "model.embed_tokens"
    assert f"saves lm_head, {embeddings} for a vocabulary of 1026 tokens" in report.problems[0]
