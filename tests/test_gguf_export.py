"""export-gguf: the shipped adapter written as a GGUF LoRA, read back with gguf.GGUFReader, and proved numerically:
B·A·alpha/r of every pair is peft's own delta weight of that layer (transposed: GPT-2's Conv1D stores (in, out),
llama.cpp a Linear's (out, in))."""
import copy
import json
import shutil

import gguf
import numpy as np
import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file

from course_utils import load_base_model, shipped_adapter
from course_utils.engines import EngineInputError
from course_utils.gguf_export import export_gguf, run_export

# The GPT-2 module -> llama.cpp tensor names, written out here rather than taken from the gguf library's map.
GGUF_NAMES = {"attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output", "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}


@pytest.fixture(scope="module")
def base_model():
    return load_base_model()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = shipped_adapter("spanish_sentiment")
    out = export_gguf(folder, tmp_path_factory.mktemp("gguf") / "spanish.gguf")
    return folder, gguf.GGUFReader(out)


def _field(reader, key):
    return reader.fields[key].contents()


def test_metadata_follows_llama_cpp(exported):
    folder, reader = exported
    config = json.loads((folder / "adapter_config.json").read_text())
    assert _field(reader, "general.architecture") == "gpt2"
    assert _field(reader, "general.type") == "adapter"
    assert _field(reader, "adapter.type") == "lora"
    assert _field(reader, "adapter.lora.alpha") == pytest.approx(config["lora_alpha"])


def test_every_tensor_name_and_shape(exported):
    folder, reader = exported
    config = json.loads((folder / "adapter_config.json").read_text())
    saved = load_file(folder / "adapter_model.safetensors")
    expected = {}
    for key, tensor in saved.items():
        module = key.removeprefix("base_model.model.transformer.h.").removesuffix(".weight")
        layer, rest = module.split(".", 1)
        hf_name, factor = rest.rsplit(".", 1)
        name = f"blk.{layer}.{GGUF_NAMES[hf_name]}.weight.{factor.lower()}"
        expected[name] = tuple(tensor.shape)
    got = {t.name: t for t in reader.tensors}
    assert set(got) == set(expected) and len(got) == 4 * 4 * 2  # 4 blocks, 4 layers each (c_attn, c_proj, c_fc, c_proj)
    for name, t in got.items():
        assert t.data.shape == expected[name]
        assert list(t.shape) == list(reversed(expected[name]))  # GGUF lists the dimensions reversed (ne)
        assert t.tensor_type == gguf.GGMLQuantizationType.F32
        if name.endswith("lora_a"):
            assert t.data.shape[0] == config["r"]  # (r, in): llama.cpp checks a.ne[1] == b.ne[0] == r
        else:
            assert t.data.shape[1] == config["r"]


def test_values_equal_the_safetensors_untransposed(exported):
    folder, reader = exported
    saved = load_file(folder / "adapter_model.safetensors")
    got = {t.name: t.data for t in reader.tensors}
    for key, tensor in saved.items():
        module = key.removeprefix("base_model.model.transformer.h.").removesuffix(".weight")
        layer, rest = module.split(".", 1)
        hf_name, factor = rest.rsplit(".", 1)
        np.testing.assert_array_equal(got[f"blk.{layer}.{GGUF_NAMES[hf_name]}.weight.{factor.lower()}"], tensor.numpy())


def test_b_times_a_is_peft_delta_weight_for_every_layer(exported, base_model):
    folder, reader = exported
    alpha = _field(reader, "adapter.lora.alpha")
    got = {t.name: torch.from_numpy(np.array(t.data)) for t in reader.tensors}
    model = PeftModel.from_pretrained(copy.deepcopy(base_model), folder)
    checked = 0
    for name, module in model.named_modules():
        if not hasattr(module, "get_delta_weight") or "default" not in getattr(module, "lora_A", {}):
            continue
        layer, rest = name.split("transformer.h.")[1].split(".", 1)
        stem = f"blk.{layer}.{GGUF_NAMES[rest]}.weight"
        a, b = got[f"{stem}.lora_a"], got[f"{stem}.lora_b"]
        rank = a.shape[0]  # llama.cpp reads the rank from the shapes and scales by alpha / rank
        delta = module.get_delta_weight("default")  # Conv1D orientation, (in, out)
        torch.testing.assert_close(b @ a * (alpha / rank), delta.T, rtol=0, atol=1e-6)
        assert delta.abs().max() > 1e-3  # a trained adapter, not zeros
        checked += 1
    assert checked == len(reader.tensors) // 2 == 16


def test_export_is_deterministic(tmp_path):
    folder = shipped_adapter("spanish_sentiment")
    first, second = export_gguf(folder, tmp_path / "a.gguf"), export_gguf(folder, tmp_path / "b.gguf")
    assert first.read_bytes() == second.read_bytes()


def _edited(tmp_path, **changes):
    folder = tmp_path / "edited"
    shutil.copytree(shipped_adapter("spanish_sentiment"), folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, **changes}))
    return folder


@pytest.mark.parametrize("kwargs,expected", [
    (dict(use_dora=True), "use_dora=true: convert_lora_to_gguf.py stops at lora_magnitude_vector"),
    (dict(modules_to_save=["ln_f"]), "modules_to_save=[\"ln_f\"]: convert_lora_to_gguf.py stops"),
    (dict(trainable_token_indices=[1]), "trainable_token_indices=[1]: convert_lora_to_gguf.py stops"),
    (dict(use_rslora=True), "use_rslora=true: llama.cpp scales every LoRA by adapter.lora.alpha / rank"),
    (dict(target_modules=["wte"]), "is not a linear layer's LoRA factor"),
])
def test_unsupported_adapters_get_one_line_saying_to_merge(base_model, tmp_path, capsys, kwargs, expected):
    torch.manual_seed(0)
    config = LoraConfig(task_type="CAUSAL_LM", r=4, **{"target_modules": ["c_attn"], **kwargs})
    folder = tmp_path / "adapter"
    get_peft_model(copy.deepcopy(base_model), config).save_pretrained(folder)
    with pytest.raises(EngineInputError, match="merge") as e:
        export_gguf(folder, tmp_path / "x.gguf")
    assert expected in str(e.value) and "\n" not in str(e.value)
    assert run_export(str(folder), str(tmp_path / "x.gguf")) == 2
    err = capsys.readouterr().err
    assert err.startswith("export-gguf: ") and err.count("\n") == 1
    assert not (tmp_path / "x.gguf").exists() and not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("changes,expected", [
    (dict(alpha_pattern={"c_fc": 8}), "alpha_pattern gives layers their own alpha"),
    (dict(bias="all"), "the adapter trains biases"),
    (dict(peft_type="IA3"), "GGUF holds LoRA adapters only"),
])
def test_config_gguf_cannot_hold_is_refused(tmp_path, changes, expected):
    with pytest.raises(EngineInputError, match=expected):
        export_gguf(_edited(tmp_path, **changes), tmp_path / "x.gguf")


def test_bad_output_path_and_missing_folder(tmp_path, capsys):
    assert run_export(str(tmp_path / "missing")) == 2
    assert run_export(str(shipped_adapter("spanish_sentiment")), str(tmp_path / "no" / "x.gguf")) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("export-gguf: no folder at") and "give --out a .gguf file name" in err[1]


def test_default_output_is_inside_the_folder(tmp_path, capsys):
    folder = tmp_path / "adapter"
    shutil.copytree(shipped_adapter("spanish_sentiment"), folder)
    assert run_export(str(folder)) == 0
    assert (folder / "adapter_model.gguf").is_file()
    assert capsys.readouterr().out.startswith(f"wrote {folder / 'adapter_model.gguf'}: a GGUF LoRA for llama.cpp")
