"""diagnose --for ENGINE: real adapters saved from the course's tiny model, each checked against each engine.

Every rule in data/engine_limits.json has a case that fails it and one that passes it (RULE_CASES; a test checks
the table covers the file). Adapters are saved once per module from one base model (deep copies of it).
"""
import copy
import json
import shutil

import pytest
import torch
from peft import LoraConfig, get_peft_model

from course_utils import load_base_model
from course_utils.engines import EngineInputError, check_engine, load_limits, read_adapter, run_engine_check
from course_utils.gguf_export import export_gguf

ENGINES = ("vllm", "llama.cpp", "tgi")  # the engines `diagnose --for` knows, as the limits file lists them


def test_the_limits_file_lists_exactly_these_engines():
    assert sorted(load_limits()) == sorted(ENGINES)

TARGETS = ["c_attn", "c_proj", "c_fc"]
CASES = {
    "r8": dict(r=8),
    "r128": dict(r=128),
    "modules_to_save": dict(r=8, modules_to_save=["ln_f"]),
    "dora": dict(r=8, use_dora=True),
    "trainable_tokens": dict(r=8, trainable_token_indices=[1, 2]),
    "embedding": dict(r=8, target_modules=["c_attn", "wte"]),
    "tgi_targets": dict(r=8, target_modules=["c_proj", "c_fc"]),
    "bf16": dict(r=8),
}

# What each adapter fails on the course's base model (GPT-2, float32), engine by engine.
EXPECTED = {
    "r8": {"vllm": {"architecture"}, "tgi": {"architecture", "targets"}, "llama.cpp": {"gguf"}},
    "r128": {"vllm": {"architecture", "rank"}, "tgi": {"architecture", "targets"}, "llama.cpp": {"gguf"}},
    "modules_to_save": {"vllm": {"architecture", "modules_to_save"},
                        "tgi": {"architecture", "targets", "modules_to_save"},
                        "llama.cpp": {"gguf", "modules_to_save"}},
    "dora": {"vllm": {"architecture", "dora"}, "tgi": {"architecture", "targets", "dora"},
             "llama.cpp": {"gguf", "dora"}},
    "trainable_tokens": {"vllm": {"architecture", "trainable_tokens"},
                         "tgi": {"architecture", "targets", "trainable_tokens"},
                         "llama.cpp": {"gguf", "trainable_tokens"}},
    "embedding": {"vllm": {"architecture", "embedding_targets"}, "tgi": {"architecture", "targets"},
                  "llama.cpp": {"gguf"}},
    "tgi_targets": {"vllm": {"architecture"}, "tgi": {"architecture"}, "llama.cpp": {"gguf"}},
    "bf16": {"vllm": {"architecture", "dtype"}, "tgi": {"architecture", "targets", "dtype"}, "llama.cpp": {"gguf"}},
}


@pytest.fixture(scope="module")
def base_model():
    return load_base_model()


@pytest.fixture(scope="module")
def adapters(base_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    folders = {}
    for name, kwargs in CASES.items():
        torch.manual_seed(0)
        kwargs = {"target_modules": TARGETS, **kwargs}
        model = get_peft_model(copy.deepcopy(base_model), LoraConfig(task_type="CAUSAL_LM", **kwargs))
        if name == "bf16":
            model = model.to(torch.bfloat16)
        model.save_pretrained(root / name)
        folders[name] = root / name
    return folders


def _base(tmp_path, architecture="LlamaForCausalLM", dtype="float32"):
    """A base model's config.json only: what the architecture and dtype rules read."""
    folder = tmp_path / f"base-{architecture}-{dtype}"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": [architecture], "dtype": dtype}))
    return str(folder)


def _edited(folder, tmp_path, **changes):
    """A copy of ``folder`` with ``changes`` written into its adapter_config.json."""
    copy_ = tmp_path / f"{folder.name}-edited"
    shutil.copytree(folder, copy_)
    config = json.loads((copy_ / "adapter_config.json").read_text())
    (copy_ / "adapter_config.json").write_text(json.dumps({**config, **changes}))
    return copy_


def _exported(folder, tmp_path):
    """A copy of ``folder`` holding its GGUF LoRA, as export-gguf writes it by default."""
    copy_ = tmp_path / f"{folder.name}-gguf"
    shutil.copytree(folder, copy_)
    export_gguf(copy_)
    return copy_


def test_saved_dtypes_are_what_the_cases_claim(adapters):
    assert read_adapter(adapters["bf16"]).dtypes == {"bfloat16"}
    assert read_adapter(adapters["r8"]).dtypes == {"float32"}
    assert read_adapter(adapters["r8"]).architecture == "GPT2LMHeadModel"


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("engine", ENGINES)
def test_each_adapter_against_each_engine(adapters, case, engine, capsys):
    report = check_engine(adapters[case], engine)
    assert set(report.failed) == EXPECTED[case][engine]
    assert len(report.findings) == len(report.failed) and not report.notes
    assert run_engine_check(str(adapters[case]), engine) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 + len(report.findings)  # a heading, then one line per finding
    assert all(line.startswith("- ") and "(source: http" in line for line in out[1:])


# (engine, rule id) -> (the case that fails it, the case that passes it, how to get it: "llama" = a Llama base
# config, "gguf" = exported first, "bf16base" = a bfloat16 base config, or a dict of config edits)
RULE_CASES = {
    ("vllm", "architecture"): ("r8", ("r8", "llama")),
    ("vllm", "rank"): ("r128", ("r8", None)),
    ("vllm", "modules_to_save"): ("modules_to_save", ("r8", None)),
    ("vllm", "dora"): ("dora", ("r8", None)),
    ("vllm", "trainable_tokens"): ("trainable_tokens", ("r8", None)),
    ("vllm", "embedding_targets"): ("embedding", ("r8", None)),
    ("vllm", "dtype"): ("bf16", ("bf16", "bf16base")),
    ("tgi", "architecture"): ("r8", ("r8", "llama")),
    ("tgi", "targets"): ("r8", ("tgi_targets", None)),
    ("tgi", "modules_to_save"): ("modules_to_save", ("r8", None)),
    ("tgi", "dora"): ("dora", ("r8", None)),
    ("tgi", "trainable_tokens"): ("trainable_tokens", ("r8", None)),
    ("tgi", "dtype"): ("bf16", ("r8", None)),
    ("llama.cpp", "gguf"): ("r8", ("r8", "gguf")),
    ("llama.cpp", "modules_to_save"): ("modules_to_save", ("r8", None)),
    ("llama.cpp", "dora"): ("dora", ("r8", None)),
    ("llama.cpp", "trainable_tokens"): ("trainable_tokens", ("r8", None)),
    ("llama.cpp", "rslora"): ({"use_rslora": True}, ("r8", None)),
}


def test_every_rule_in_the_limits_file_has_a_failing_and_a_passing_case():
    rules = {(engine, rule["id"]) for engine, entry in load_limits().items() for rule in entry["rules"]}
    assert rules == set(RULE_CASES)
    for entry in load_limits().values():
        assert entry["version"]
        assert all(rule["source"] and rule["version"] for rule in entry["rules"])


@pytest.mark.parametrize("engine,rule", sorted(RULE_CASES))
def test_each_rule_fails_and_passes(adapters, tmp_path, engine, rule):
    failing, (passing, how) = RULE_CASES[(engine, rule)]
    folder = _edited(adapters["r8"], tmp_path, **failing) if isinstance(failing, dict) else adapters[failing]
    assert rule in check_engine(folder, engine).failed
    base = None
    folder = adapters[passing]
    if how == "llama":
        base = _base(tmp_path)
    elif how == "bf16base":
        base = _base(tmp_path, dtype="bfloat16")
    elif how == "gguf":
        folder = _exported(folder, tmp_path)
    report = check_engine(folder, engine, base=base)
    assert rule in report.checked and rule not in report.failed


def test_a_folder_that_passes_says_so(adapters, tmp_path, capsys):
    llama = _base(tmp_path)
    assert check_engine(adapters["r8"], "vllm", base=llama).ok
    assert check_engine(adapters["tgi_targets"], "tgi", base=llama).ok
    folder = _exported(adapters["r8"], tmp_path)
    assert run_engine_check(str(folder), "llama.cpp") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ok: {folder} passes every llama.cpp") and len(out.splitlines()) == 1


def test_rank_message_names_the_flag_and_the_merge(adapters):
    (line,) = [f for f in check_engine(adapters["r128"], "vllm").findings if f.startswith("rank")]
    assert line.startswith("rank 128 > vLLM's default --max-lora-rank 16: start vLLM with --max-lora-rank 128, or merge")


@pytest.mark.parametrize("rank,needed", [(17, 32), (64, 64), (300, 320), (512, 512)])
def test_rank_rounds_up_to_a_value_vllm_accepts(adapters, tmp_path, rank, needed):
    (line,) = [f for f in check_engine(_edited(adapters["r8"], tmp_path, r=rank), "vllm").findings if "rank" in f]
    assert f"start vLLM with --max-lora-rank {needed}, or merge" in line


def test_rank_pattern_counts_and_a_rank_above_512_can_only_merge(adapters, tmp_path):
    folder = _edited(adapters["r8"], tmp_path, rank_pattern={"c_fc": 1024})
    (line,) = [f for f in check_engine(folder, "vllm").findings if f.startswith("rank")]
    assert line.startswith("rank 1024 > vLLM's largest --max-lora-rank 512: retrain with a smaller r, or merge")


def test_without_the_base_config_the_base_rules_are_skipped_with_a_note(adapters, tmp_path):
    folder = _edited(adapters["bf16"], tmp_path, base_model_name_or_path="some-org/not-here")
    report = check_engine(folder, "vllm")
    assert report.failed == [] and {"architecture", "dtype"}.isdisjoint(report.checked)
    assert len(report.notes) == 2 and all("--base" in n for n in report.notes)


def test_bad_input_is_one_line_naming_the_fix(adapters, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    shutil.copy(adapters["r8"] / "adapter_config.json", no_weights)
    bad_json = _edited(adapters["r8"], tmp_path)
    (bad_json / "adapter_config.json").write_text("{not json")
    cases = [
        (tmp_path / "missing", "vllm", None, "no folder at"),
        (empty, "vllm", None, "no adapter_config.json in"),
        (no_weights, "tgi", None, "no adapter_model.safetensors in"),
        (bad_json, "llama.cpp", None, "is not readable JSON"),
        (adapters["r8"], "sglang", None, "unknown engine 'sglang': choose one of vllm, tgi, llama.cpp"),
        (adapters["r8"], "vllm", str(empty), "no config.json in"),
    ]
    for folder, engine, base, expected in cases:
        with pytest.raises(EngineInputError, match=expected):
            check_engine(folder, engine, base=base)
        assert run_engine_check(str(folder), engine, base=base) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err and err.startswith(f"diagnose --for {engine}: ")
