"""course_utils.diagnose: one line per problem (what, the evidence, where to read; never the code of the fix),
never a traceback, never a changed folder."""
import dataclasses
import hashlib
import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from peft import (
    LoraConfig,  # the real class; diagnose reads its fields from peft's source without importing it
)

from course_utils import assets, diagnosis_files, diagnosis_report
from course_utils import diagnosis as diagnose_module
from course_utils.diagnosis import INTERNAL_ERROR, diagnose
from course_utils.shipped import shipped_adapter

ROOT = Path(__file__).parents[1]
SHIPPED = shipped_adapter("english_ner")
CONFIG_BYTES = (SHIPPED / "adapter_config.json").read_bytes()
WEIGHTS_BYTES = (SHIPPED / "adapter_model.safetensors").read_bytes()
HEADER_END = 8 + struct.unpack("<Q", WEIGHTS_BYTES[:8])[0]


def snapshot(folder: Path) -> dict:
    if not folder.exists():
        return {}
    if folder.is_file():
        return {".": hashlib.sha256(folder.read_bytes()).hexdigest()}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


# Where a finding says to read: a lesson section, then a peft or transformers documentation page.
READ = re.compile(r'; read lesson [1-9]\d?, section \d+ ".+?"(?:, part ".+?")?, and '
                  r"https://huggingface\.co/docs/(?:peft|transformers)/\S+\.$")
# The code of a fix: a call (not a plural "(s)"), an assignment or keyword argument, a shell command, a code span.
CODE = re.compile(r"[A-Za-z_][\w.]*\((?!s\))|\b[A-Za-z_]\w*\s?=\s?[^=\s]|\bpip install\b|\bchmod\b|\brm -|`")
FIX_CALLS = ("from_pretrained", "resize_token_embeddings", "save_pretrained(", "key_mapping", "save_model",
             "get_state_dict", "load_bin_adapter_weights", "merge_to_folder", "weights_only", "modules_to_save=")


def problem_and_evidence(line: str) -> str:
    """A finding without its where-to-read part (whose section titles may quote code)."""
    return READ.split(line)[0]


def assert_points_without_answering(d):
    """Every finding names where to read, and none gives the code of the fix."""
    for line in d.problems:
        assert READ.search(line), f"names nowhere to read: {line}"
        text = problem_and_evidence(line)
        assert not CODE.search(text), f"gives code ({CODE.search(text).group()!r}): {line}"
        assert not [c for c in FIX_CALLS if c in text], line


def check(folder: Path, *needles: str, base=None):
    """Diagnose ``folder``; it must find a problem containing every needle, in one line, and change nothing.

    Every finding must name where to read and give no code of the fix."""
    before = snapshot(folder)
    d = diagnose(folder, base_model=base)
    assert snapshot(folder) == before
    assert not d.ok, str(d)
    assert all("\n" not in p for p in d.problems)
    assert not any(INTERNAL_ERROR in p for p in d.problems), d.problems
    assert_points_without_answering(d)
    text = str(d)
    assert "Traceback" not in text and text.count("\n") == len(d.problems)
    assert any(all(n in p for n in needles) for p in d.problems), d.problems
    return d


@pytest.fixture()
def adapter(tmp_path):
    return Path(shutil.copytree(SHIPPED, tmp_path / "adapter"))


def edit_config(folder: Path, **changes):
    config = json.loads((folder / "adapter_config.json").read_text())
    for k, v in changes.items():
        if v is ...:
            del config[k]
        else:
            config[k] = v
    (folder / "adapter_config.json").write_text(json.dumps(config))


def test_a_good_adapter_gives_its_summary(adapter):
    d = diagnose(adapter)
    assert d.ok and d.problems == []
    for piece in ("LORA", "r=16", "lora_alpha 32", "c_attn, c_fc, c_proj", "32 in adapter_model.safetensors",
                  f"{len(WEIGHTS_BYTES):,} bytes", "F32"):
        assert piece in d.summary
    assert str(d) == d.summary


def test_a_good_adapter_fits_the_course_model(adapter):
    d = diagnose(adapter, base_model="course")
    assert d.ok, str(d)
    assert "all 16 adapted modules exist" in d.summary


def _headings(lesson: int) -> list[str]:
    """The ``##`` and ``###`` headings of a lesson notebook, without backticks."""
    nb = next((ROOT / "notebooks").glob(f"{lesson:02d}_*.ipynb"))
    cells = json.loads(nb.read_text())["cells"]
    return [line.replace("`", "").strip() for c in cells if c["cell_type"] == "markdown"
            for line in "".join(c["source"]).splitlines() if line.startswith("##")]


READINGS = sorted({v for v in vars(diagnosis_report).values() if isinstance(v, diagnosis_report.Reading)},
                  key=lambda r: (r.lesson, r.section, r.part, r.docs))


@pytest.mark.parametrize("reading", READINGS, ids=str)
def test_every_reading_names_a_real_lesson_section_and_a_docs_page(reading):
    headings = _headings(reading.lesson)
    section = f"## {reading.section}. {reading.title}"
    assert section in headings, f"lesson {reading.lesson} has no heading {section!r}: {headings}"
    if reading.part:
        after = headings[headings.index(section) + 1:]
        inside = after[:next((i for i, h in enumerate(after) if h.startswith("## ")), len(after))]
        assert f"### {reading.part}" in inside, f"section {section!r} has no part {reading.part!r}: {inside}"
    assert re.fullmatch(r"https://huggingface\.co/docs/(?:peft|transformers)/[\w/]+(?:#[\w-]+)?", reading.docs)
    assert READ.search(diagnosis_report.finding("a problem", reading))


def test_the_code_detector_catches_the_fixes_diagnose_used_to_print():
    for old in ['load it onto the base, base.resize_token_embeddings(len(tokenizer)), then load',
                'PeftModel.from_pretrained(..., key_mapping={...})',
                "e.g. `chmod -R u+rX saved`", "pass state_dict=accelerator.get_state_dict(model)",
                "install it (pip install -U peft)"]:
        assert CODE.search(old) or any(c in old for c in FIX_CALLS), old


def test_missing_path(tmp_path):
    check(tmp_path / "nope", "does not exist", "a typo", "read lesson 3, section 6")


def test_a_file_instead_of_the_folder(adapter):
    check(adapter / "adapter_config.json", "is a file, not a folder", f"that is {adapter}")


def test_unreadable_folder(adapter, monkeypatch):
    def refuse(folder):
        raise PermissionError(13, "Permission denied", str(folder))

    monkeypatch.setattr(diagnose_module, "_listing", refuse)
    check(adapter, "cannot be read", "PermissionError", "permissions")


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    check(tmp_path / "empty", "empty folder", "nothing was saved", "read lesson 1, section 4")


def test_multi_adapter_save_names_the_subfolders(tmp_path):
    root = tmp_path / "both"
    for name in assets.ADAPTER_NAMES:
        shutil.copytree(shipped_adapter(name), root / name)
    (root / "README.md").write_text("model card")
    d = check(root, "multi-adapter save", "english_ner, spanish_sentiment", str(root / "english_ner"),
              "read lesson 5, section 4")
    assert len(d.problems) == 1


def test_multi_adapter_save_reports_a_broken_subfolder(tmp_path):
    root = tmp_path / "both"
    for name in assets.ADAPTER_NAMES:
        shutil.copytree(shipped_adapter(name), root / name)
    (root / "spanish_sentiment" / "adapter_model.safetensors").unlink()
    check(root, "in subfolder spanish_sentiment:", "no adapter_model.safetensors")


def test_config_not_json(adapter):
    (adapter / "adapter_config.json").write_bytes(CONFIG_BYTES[: len(CONFIG_BYTES) // 2])
    check(adapter, "adapter_config.json is not valid JSON", "line", "cut short")


def test_config_not_an_object(adapter):
    (adapter / "adapter_config.json").write_text("[1, 2]")
    check(adapter, "holds a JSON list")


@pytest.mark.parametrize("field, needle", [
    ("peft_type", 'no "peft_type" field'),
    ("r", 'no "r" field'),
    ("target_modules", 'no "target_modules" field'),
])
def test_config_missing_a_required_field(adapter, field, needle):
    edit_config(adapter, **{field: ...})
    check(adapter, needle)


def test_unknown_peft_type(adapter):
    edit_config(adapter, peft_type="LORRA")
    check(adapter, "unknown peft_type 'LORRA'", "e.g. LORA")


def test_lowercase_peft_type_names_the_known_type(adapter):
    edit_config(adapter, peft_type="lora")
    check(adapter, "unknown peft_type 'lora'", "only in letter case from the known type 'LORA'")


def test_bad_rank_value(adapter):
    edit_config(adapter, r=0)
    check(adapter, '"r": 0', "positive whole number")


def _raw_safetensors(folder: Path, entries: dict, data: bytes):
    header = json.dumps(entries).encode()
    (folder / "adapter_model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + data)


LORA_A = "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight"


@pytest.mark.parametrize("fault, needle", [
    ("empty config", "adapter_config.json is empty"),
    ("config not UTF-8", "not UTF-8 text"),
    ("config nested too deeply", "nested too deeply"),
    ("config too large", "far too large"),
    ("target_modules a number", "neither a list of module names"),
    ("lora_alpha a string", "which is not a number"),
    ("unknown dtype", "unknown dtype 'X9'"),
    ("byte range of another size", "should take 8 bytes but its range holds 4"),
    ("3-D LoRA tensor", "not 2-D matrices"),
    ("a layer norm among the LoRA tensors", "not LoRA weights"),
])
def test_every_other_finding_points_without_answering(adapter, monkeypatch, fault, needle):
    """The faults the tests above do not make: each one is found, names where to read, and gives no code."""
    import torch

    config = adapter / "adapter_config.json"
    if fault == "empty config":
        config.write_text("  ")
    elif fault == "config not UTF-8":
        config.write_bytes(b"\xff\xfe{}")
    elif fault == "config nested too deeply":
        config.write_text("[" * 100_000)
    elif fault == "config too large":
        monkeypatch.setattr(diagnosis_files, "MAX_CONFIG_BYTES", 10)
    elif fault == "target_modules a number":
        edit_config(adapter, target_modules=5)
    elif fault == "lora_alpha a string":
        edit_config(adapter, lora_alpha="x")
    elif fault == "unknown dtype":
        _raw_safetensors(adapter, {LORA_A: {"dtype": "X9", "shape": [1], "data_offsets": [0, 4]}}, bytes(4))
    elif fault == "byte range of another size":
        _raw_safetensors(adapter, {LORA_A: {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, bytes(4))
    elif fault == "3-D LoRA tensor":
        save_tensors(adapter, {**shipped_tensors(SHIPPED), LORA_A: torch.zeros(16, 128, 1)})
    else:
        save_tensors(adapter, {**shipped_tensors(SHIPPED), "base_model.model.transformer.h.0.ln_1.weight": torch.zeros(128)})
    check(adapter, needle)


def test_weights_missing(adapter):
    (adapter / "adapter_model.safetensors").unlink()
    check(adapter, "no adapter_model.safetensors", "Repo id must be", "read lesson 3, section 6")


def test_weights_empty(adapter):
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    check(adapter, "adapter_model.safetensors is empty (0 bytes)", "interrupted")


def test_weights_truncated(adapter):
    (adapter / "adapter_model.safetensors").write_bytes(WEIGHTS_BYTES[:-1000])
    check(adapter, "truncated", "read lesson 1, section 6")


def test_weights_not_safetensors(adapter):
    (adapter / "adapter_model.safetensors").write_text("this is not a safetensors file at all")
    check(adapter, "not a safetensors file", "read lesson 1, section 6")


def test_weights_are_a_renamed_pickle(adapter):
    import torch

    torch.save({"w": torch.zeros(2)}, adapter / "adapter_model.safetensors")
    check(adapter, "PyTorch pickle (zip) file renamed", "read lesson 1, section 7")


def test_only_a_bin_file(adapter):
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(adapter / "adapter_model.safetensors"), adapter / "adapter_model.bin")
    (adapter / "adapter_model.safetensors").unlink()
    check(adapter, "only adapter_model.bin", "pickle", "can run code", "read lesson 1, section 7")


def test_weights_for_modules_the_config_does_not_target(adapter):
    edit_config(adapter, target_modules=["c_attn"])
    check(adapter, "named c_fc, c_proj", 'target_modules ["c_attn"] does not include')


def test_config_targets_modules_without_weights(adapter):
    edit_config(adapter, target_modules=["c_attn", "c_proj", "c_fc", "q_proj"])
    check(adapter, "target_modules lists q_proj", "no LoRA weights")


def test_rank_mismatch(adapter):
    edit_config(adapter, r=8)
    d = check(adapter, "32 LoRA tensor(s) have rank 16", "gives these modules rank 8",
              "'base_model.model.transformer.h.0.attn.c_attn.lora_A.weight' has shape [16, 128]", "size mismatch",
              "read lesson 1, section 6")
    assert len(d.problems) == 1
    assert not re.search(r'"r"\W*16|\br\W*16', d.problems[0]), "the finding gives the rank to write: the fix"


def test_a_lora_tensor_without_its_partner(adapter):
    from safetensors.torch import load_file, save_file

    tensors = load_file(adapter / "adapter_model.safetensors")
    del tensors["base_model.model.transformer.h.2.mlp.c_fc.lora_B.weight"]
    save_file(tensors, adapter / "adapter_model.safetensors")
    check(adapter, "only one of lora_A / lora_B", "'transformer.h.2.mlp.c_fc' lacks lora_B")


def test_full_model_weights_saved_as_an_adapter(adapter):
    shutil.copy(assets.SHIPPED_MODEL / "model.safetensors", adapter / "adapter_model.safetensors")
    check(adapter, "holds no LoRA tensors", "transformer.")


def test_a_merged_full_model_where_an_adapter_was_expected(tmp_path):
    merged = Path(shutil.copytree(assets.SHIPPED_MODEL, tmp_path / "merged"))
    check(merged, "holds a full model", "merge_and_unload", "read lesson 3, section 1")


def test_adapter_config_left_in_a_merged_model_folder(tmp_path):
    merged = Path(shutil.copytree(assets.SHIPPED_MODEL, tmp_path / "merged"))
    shutil.copy(SHIPPED / "adapter_config.json", merged)
    d = check(merged, "adapter_config.json", "left from an adapter save", str(merged / "adapter_config.json"),
              "read lesson 3, section 1")
    assert len(d.problems) == 1


def test_merged_model_saved_over_the_adapter(adapter):
    for name in ("config.json", "model.safetensors"):
        shutil.copy(assets.SHIPPED_MODEL / name, adapter)
    check(adapter, "holds both an adapter", "read lesson 3, section 1")


def test_base_without_the_target_modules(adapter):
    from safetensors.torch import load_file, save_file

    tensors = {k.replace("c_fc", "q_proj"): v for k, v in load_file(adapter / "adapter_model.safetensors").items()}
    save_file(tensors, adapter / "adapter_model.safetensors")
    edit_config(adapter, target_modules=["c_attn", "c_proj", "q_proj"])
    assert diagnose(adapter).ok  # consistent on its own; only the base shows the problem
    check(adapter, "target_modules q_proj match no module of the base model", "made for the course's model",
          base="course")
    check(adapter, "4 LoRA module(s) of the adapter are not in the base model", "another model",
          "made for the course's model", base="course")
    edit_config(adapter, base_model_name_or_path="openai-community/gpt2", revision="main")
    check(adapter, "4 LoRA module(s)", "made for 'openai-community/gpt2'", base="course")


def test_base_of_another_size(adapter, tmp_path):
    small = tmp_path / "small_base"
    small.mkdir()
    config = json.loads((assets.SHIPPED_MODEL / "config.json").read_text())
    config["n_embd"] = 64
    (small / "config.json").write_text(json.dumps(config))
    check(adapter, "do not fit the base model", "has 64 inputs", "another size", "read lesson 3, section 6",
          base=str(small))


def test_base_that_cannot_be_loaded(adapter, tmp_path):
    check(adapter, "the base model folder", "does not exist", '"course"', base=str(tmp_path / "no_such_model"))
    (tmp_path / "no_config").mkdir()
    check(adapter, "holds no config.json", base=str(tmp_path / "no_config"))
    check(adapter, "cannot load the base model 'not-a-cached-hub-model'", base="not-a-cached-hub-model")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "course_utils", "diagnose", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_cli_exit_codes_and_no_traceback(adapter, tmp_path):
    good = run_cli(adapter)
    assert good.returncode == 0 and "no problem found" in good.stdout and "r=16" in good.stdout
    edit_config(adapter, r=4)
    (tmp_path / "empty").mkdir()
    for args, needle in [((adapter,), "gives these modules rank 4"), ((tmp_path / "missing",), "does not exist"),
                         ((tmp_path / "empty",), "empty folder"),
                         ((adapter, "--base", tmp_path / "nope"), "the base model folder")]:
        run = run_cli(*args)
        assert run.returncode == 1, run
        assert needle in run.stdout and "Traceback" not in run.stdout + run.stderr


def test_diagnose_imports_neither_torch_nor_peft():
    code = ("import sys, course_utils; course_utils.diagnose(sys.argv[1]); d = course_utils.diagnose(sys.argv[1]); "
            "print(d.ok, 'torch' in sys.modules, 'peft' in sys.modules, 'transformers' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code, str(SHIPPED)], capture_output=True, text=True, timeout=60)
    assert run.stdout.split() == ["True", "False", "False", "False"], run


def _mutate(data: bytes, flips, cut) -> bytes:
    buf = bytearray(data)
    for pos, value in flips:
        buf[pos % len(buf)] = value
    return bytes(buf[:cut]) if cut is not None else bytes(buf)


def _assert_survives(folder: Path):
    before = snapshot(folder)
    d = diagnose(folder)
    assert snapshot(folder) == before
    assert isinstance(d.ok, bool) and all("\n" not in p for p in d.problems)
    assert not any(INTERNAL_ERROR in p for p in d.problems), d.problems
    assert "Traceback" not in str(d)
    assert all(READ.search(p) for p in d.problems), d.problems  # even for a file made of noise


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(flips=st.lists(st.tuples(st.one_of(st.integers(0, HEADER_END + 16), st.integers(0, len(WEIGHTS_BYTES) - 1)),
                                st.integers(0, 255)), max_size=4),
       cut=st.one_of(st.none(), st.integers(0, len(WEIGHTS_BYTES))))
def test_corrupted_weights_never_raise_nor_change_the_folder(flips, cut):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(shutil.copytree(SHIPPED, Path(tmp) / "a"))
        (folder / "adapter_model.safetensors").write_bytes(_mutate(WEIGHTS_BYTES, flips, cut))
        _assert_survives(folder)


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, len(CONFIG_BYTES) - 1), st.integers(0, 255)), max_size=4),
       cut=st.one_of(st.none(), st.integers(0, len(CONFIG_BYTES))),
       replace=st.one_of(st.none(), st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                                                 lambda c: st.lists(c, max_size=3) | st.dictionaries(
                                                     st.text(max_size=5), c, max_size=3), max_leaves=6)),
       field=st.sampled_from(["peft_type", "r", "target_modules", "lora_alpha", "rank_pattern", "bias"]))
def test_corrupted_config_never_raises_nor_changes_the_folder(flips, cut, replace, field):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(shutil.copytree(SHIPPED, Path(tmp) / "a"))
        if replace is not None:  # a valid JSON file with one field set to an arbitrary JSON value
            edit_config(folder, **{field: replace})
        else:
            (folder / "adapter_config.json").write_bytes(_mutate(CONFIG_BYTES, flips, cut))
        _assert_survives(folder)


# --- Failures of lessons 6 to 9: ZeRO-3 saves, newer peft configs, added tokens, heads, renamed paths ---

def save_tensors(folder: Path, tensors: dict):
    from safetensors.torch import save_file

    save_file(tensors, folder / "adapter_model.safetensors", metadata={"format": "pt"})  # as peft writes it


def shipped_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


def test_a_zero3_save_with_no_tensors_at_all(adapter):
    save_tensors(adapter, {})
    assert (adapter / "adapter_model.safetensors").stat().st_size == 40
    d = check(adapter, "holds no tensors at all (a 40-byte file)", "ZeRO-3", "never gathered", "read lesson 9, section 5")
    assert len(d.problems) == 1


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_empty_tensors_are_the_zero3_symptom(adapter, data):
    import torch

    tensors = shipped_tensors(SHIPPED)
    emptied = data.draw(st.lists(st.sampled_from(sorted(tensors)), min_size=1, unique=True))
    save_tensors(adapter, {k: torch.zeros(0) if k in emptied else v for k, v in tensors.items()})
    d = check(adapter, f"holds {len(emptied)} empty tensor(s) of {len(tensors)}", "shape [0]", "ZeRO-3")
    assert len(d.problems) == 1  # not also reported as a rank or shape problem


@settings(max_examples=25, deadline=None)
@given(extra=st.dictionaries(st.from_regex(r"[a-z][a-z_]{2,15}", fullmatch=True),
                             st.one_of(st.booleans(), st.integers(), st.none()), min_size=1, max_size=3))
def test_settings_from_a_newer_peft_are_named(extra):
    extra = {k: v for k, v in extra.items() if k not in {f.name for f in dataclasses.fields(LoraConfig)}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(shutil.copytree(SHIPPED, Path(tmp) / "a"))
        edit_config(folder, **extra, peft_version="9.9.0")
        if not extra:
            assert diagnose(folder).ok
            return
        d = check(folder, f"{len(extra)} setting(s) peft", "does not know", min(extra), "peft 9.9.0",
                  "Unexpected keyword arguments", "read lesson 8, section 1", "#version-mismatch")
        assert len(d.problems) == 1


def test_a_config_saved_by_this_peft_has_no_unknown_settings(adapter):
    assert diagnose(adapter).ok


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(added=st.integers(1, 64), head=st.booleans())
def test_embeddings_saved_for_added_tokens_need_a_resized_base(adapter, added, head):
    import torch

    tensors = shipped_tensors(SHIPPED)
    tensors["base_model.model.transformer.wte.weight"] = torch.zeros(1024 + added, 128)
    if head:
        tensors["base_model.model.lm_head.weight"] = torch.zeros(1024 + added, 128)
    save_tensors(adapter, tensors)
    assert diagnose(adapter).ok  # save_pretrained(save_embedding_layers=True) writes exactly this
    d = check(adapter, f"for a vocabulary of {1024 + added} tokens", "has 1024", "tokens were added in training",
              "read lesson 6, section 3", "#extending-the-vocabulary", base="course")
    assert len(d.problems) == 1
    assert "resize" not in problem_and_evidence(d.problems[0]) and "tokenizer" not in d.problems[0]


def test_embeddings_of_the_base_size_are_fine(adapter):
    import torch

    save_tensors(adapter, {**shipped_tensors(SHIPPED),
                           "base_model.model.transformer.wte.modules_to_save.weight": torch.zeros(1024, 128)})
    edit_config(adapter, modules_to_save=["wte"])
    assert diagnose(adapter, base_model="course").ok, str(diagnose(adapter, base_model="course"))


def test_trainable_tokens_beyond_the_base_vocabulary(adapter):
    edit_config(adapter, trainable_token_indices={"wte": [3, 1030]})
    check(adapter, "trainable_token_indices goes up to token 1030", "has 1024 tokens", "read lesson 6, section 4",
          base="course")


@pytest.mark.parametrize("task", ["SEQ_CLS", "TOKEN_CLS"])
def test_a_classification_adapter_without_its_head(adapter, task):
    edit_config(adapter, task_type=task, modules_to_save=["classifier", "score"])
    d = check(adapter, f"classification adapter (task_type {task})", "no classifier or score tensor",
              'modules_to_save is ["classifier", "score"]', "read lesson 7, section 1")
    assert len(d.problems) == 1


def test_a_classification_adapter_with_its_head_fits_a_classifier_base(adapter):
    import torch

    edit_config(adapter, task_type="SEQ_CLS", modules_to_save=["classifier", "score"])
    tensors = shipped_tensors(SHIPPED)
    save_tensors(adapter, {**tensors, "base_model.model.score.modules_to_save.weight": torch.zeros(2, 128)})
    assert diagnose(adapter, base_model="course").ok, str(diagnose(adapter, base_model="course"))
    save_tensors(adapter, {**tensors, "base_model.model.score.modules_to_save.weight": torch.zeros(3, 128)})
    check(adapter, "saves score with shape [3, 128]", "has [2, 128]", "number of labels", base="course")


def test_modules_to_save_without_saved_weights(adapter):
    edit_config(adapter, modules_to_save=["ln_f"])
    check(adapter, "modules_to_save lists ln_f", "holds no weights for it")


@pytest.mark.parametrize("old, new, needle", [
    ("base_model.model.transformer.", "base_model.model.model.transformer.", "have an extra prefix 'model.'"),
    ("base_model.model.transformer.", "base_model.model.", "lack the prefix 'transformer.'"),
])
def test_renamed_module_paths_match_nothing_in_the_base(adapter, old, new, needle):
    save_tensors(adapter, {k.replace(old, new): v for k, v in shipped_tensors(SHIPPED).items()})
    assert diagnose(adapter).ok  # the file is consistent; only the base shows the renaming
    d = check(adapter, "16 module path(s) of the adapter match nothing", "Found missing adapter keys",
              "only a prefix differs", needle, "made for the course's model", "read lesson 8, section 2",
              "Module paths renamed by a transformers refactor", base="course")
    assert len(d.problems) == 1


def test_cli_reports_an_empty_adapter_with_exit_code_1(adapter):
    save_tensors(adapter, {})
    run = run_cli(adapter)
    assert run.returncode == 1 and "ZeRO-3" in run.stdout and "Traceback" not in run.stdout + run.stderr


# --- Where the adapter came from: the recorded base (lesson 2, section 4) and torch.compile's prefix (lesson 11) ---

def test_the_shipped_adapter_records_this_machines_base(adapter):
    recorded = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert Path(recorded) == assets.SHIPPED_MODEL.resolve()
    assert diagnose(adapter).ok


@pytest.mark.parametrize("value, needle", [(..., "is missing"), (None, "is None"), ("", "is ''"), ("  ", "records no base")])
def test_no_recorded_base(adapter, value, needle):
    edit_config(adapter, base_model_name_or_path=value)
    d = check(adapter, "records no base model", needle, "write the base the adapter was trained on",
              'read lesson 2, section 4', 'part "When the recorded base is not on this machine"')
    assert len(d.problems) == 1


@pytest.mark.parametrize("path", ["/home/colleague/models/tiny-gpt2", "../their_models/tiny-gpt2", "~/nope/tiny-gpt2",
                                  "C:\\Users\\colleague\\tiny-gpt2", "models/gpt2/final"])
def test_a_base_folder_that_exists_only_on_another_machine(adapter, path):
    edit_config(adapter, base_model_name_or_path=path)
    d = check(adapter, f"the folder {path!r}, which does not exist on this machine",
              "point that field at this machine's copy of the same base")
    assert len(d.problems) == 1


def test_a_relative_base_folder_that_exists_here_is_fine(adapter, tmp_path, monkeypatch):
    (tmp_path / "bases" / "tiny").mkdir(parents=True)
    edit_config(adapter, base_model_name_or_path="bases/tiny")
    monkeypatch.chdir(tmp_path)
    assert diagnose(adapter).ok


@pytest.fixture()
def hub_cache(tmp_path, monkeypatch):
    """An empty local Hugging Face cache, offline; ``cache(repo_id)`` puts a model's config.json in it."""
    import huggingface_hub.constants

    root = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def cache(repo_id: str):
        snapshot = root / f"models--{repo_id.replace('/', '--')}" / "snapshots" / "0123abc"
        snapshot.mkdir(parents=True)
        (snapshot / "config.json").write_text("{}")
    return cache


def test_a_hub_id_that_is_not_cached_while_offline(adapter, hub_cache):
    edit_config(adapter, base_model_name_or_path="colleague/tiny-gpt2", revision="0123abc")
    d = check(adapter, "'colleague/tiny-gpt2', which is neither a folder here nor a model in the local Hugging Face cache",
              "offline", "download that model while online")
    assert len(d.problems) == 1
    hub_cache("colleague/tiny-gpt2")
    assert diagnose(adapter).ok


def test_an_uncached_hub_id_is_no_finding_when_online(adapter, hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    edit_config(adapter, base_model_name_or_path="openai-community/gpt2", revision="607a30d")
    assert diagnose(adapter).ok


@pytest.mark.parametrize("revision", [..., None, ""])
def test_a_hub_id_without_a_revision(adapter, hub_cache, revision):
    hub_cache("openai-community/gpt2")
    edit_config(adapter, base_model_name_or_path="openai-community/gpt2", revision=revision)
    d = check(adapter, "names the Hub model 'openai-community/gpt2' but no revision is recorded",
              "pin the revision the adapter was trained on")
    assert len(d.problems) == 1
    edit_config(adapter, revision="607a30d")
    assert diagnose(adapter).ok


def test_the_tracked_shipped_folder_names_its_placeholder(hub_cache):
    """The tracked copy records "course-tiny-gpt2"; shipped_adapter() returns one that names this machine's base."""
    d = check(assets.SHIPPED_ADAPTERS / "english_ner", "'course-tiny-gpt2', the placeholder",
              "shipped_adapter helper, whose copy records this machine's course model")
    assert len(d.problems) == 1


@pytest.mark.parametrize("prefix", ["_orig_mod.", "module._orig_mod."])
def test_keys_saved_from_a_compiled_model(adapter, prefix):
    save_tensors(adapter, {prefix + k: v for k, v in shipped_tensors(SHIPPED).items()})
    d = check(adapter, "32 tensor name(s)", "carry the prefix '_orig_mod.'", f"e.g. '{prefix}base_model.model.",
              "torch.compile wrapper", "its _orig_mod", "strip the prefix", "read lesson 11, section 6")
    assert len(d.problems) == 1
