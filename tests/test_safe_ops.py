"""course_utils.safe_ops: atomic saves, merges that keep every adapter, pickle-safe .bin loading, repointing the base."""
import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from course_utils import compare_logits, diagnose, load_base_model
from course_utils.roundtrip import logits_of, sample_batch
from course_utils.safe_ops import load_bin_adapter_weights, merge_to_folder, safe_save, set_base_model
from course_utils.shipped import shipped_adapter


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


@pytest.fixture(scope="module")
def two_adapters():
    from peft import PeftModel

    model = PeftModel.from_pretrained(load_base_model(), shipped_adapter("english_ner"), adapter_name="english_ner")
    model.load_adapter(shipped_adapter("spanish_sentiment"), adapter_name="spanish_sentiment")
    model.set_adapter("english_ner")
    return model.eval()


@pytest.fixture(scope="module")
def one_adapter():
    from peft import PeftModel

    return PeftModel.from_pretrained(load_base_model(), shipped_adapter("english_ner")).eval()


@pytest.fixture()
def old_folder(tmp_path):
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4}')
    (folder / "adapter_model.safetensors").write_bytes(os.urandom(4096))
    return folder


class HalfWriter:
    """A model whose save writes part of a file, then fails like a full disk."""

    def save_pretrained(self, folder, **kwargs):
        (Path(folder) / "adapter_model.safetensors").write_bytes(b"\0" * 100)
        raise OSError(28, "No space left on device")


def test_save_into_a_new_folder(one_adapter, tmp_path):
    folder = safe_save(one_adapter, tmp_path / "new" / "adapter")
    assert folder == tmp_path / "new" / "adapter"
    d = diagnose(folder)
    assert d.ok, str(d)
    assert leftovers(folder) == []


def test_save_passes_save_pretrained_options(one_adapter, tmp_path):
    folder = safe_save(one_adapter, tmp_path / "bin", safe_serialization=False)
    assert (folder / "adapter_model.bin").is_file() and not (folder / "adapter_model.safetensors").exists()


def test_refuses_a_non_empty_folder(one_adapter, old_folder):
    before = snapshot(old_folder)
    with pytest.raises(FileExistsError) as e:
        safe_save(one_adapter, old_folder)
    assert "overwrite=True" in str(e.value) and str(old_folder) in str(e.value) and "\n" not in str(e.value)
    assert snapshot(old_folder) == before


def test_an_empty_folder_is_fine(one_adapter, tmp_path):
    (tmp_path / "empty").mkdir()
    assert diagnose(safe_save(one_adapter, tmp_path / "empty")).ok


def test_overwrite_replaces_the_folder(one_adapter, old_folder):
    safe_save(one_adapter, old_folder, overwrite=True)
    assert snapshot(old_folder)["adapter_model.safetensors"] == snapshot(
        shipped_adapter("english_ner"))["adapter_model.safetensors"]
    assert diagnose(old_folder).ok and leftovers(old_folder) == []


def test_a_failing_save_keeps_the_old_folder(old_folder):
    before = snapshot(old_folder)
    with pytest.raises(OSError, match="No space left"):
        safe_save(HalfWriter(), old_folder, overwrite=True)
    assert snapshot(old_folder) == before
    assert leftovers(old_folder) == []


def test_a_killed_save_keeps_the_old_folder(old_folder):
    before = snapshot(old_folder)
    script = textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        from course_utils.safe_ops import safe_save

        class Killed:
            def save_pretrained(self, folder, **kwargs):
                with open(Path(folder) / "adapter_model.safetensors", "wb") as f:
                    f.write(b"\\0" * 1000)
                    f.flush()
                    os._exit(3)  # the process dies mid-write, no cleanup runs

        safe_save(Killed(), {str(old_folder)!r}, overwrite=True)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 3, run.stderr
    assert snapshot(old_folder) == before
    stale = leftovers(old_folder)
    assert len(stale) == 1 and ".saving-" in stale[0]  # nothing can clean up after os._exit...
    with pytest.raises(FileExistsError):  # ...but the next safe_save of that folder does
        safe_save(HalfWriter(), old_folder)
    assert leftovers(old_folder) == [] and snapshot(old_folder) == before


def test_a_kill_between_the_two_renames_is_recovered(old_folder):
    before = snapshot(old_folder)
    os.rename(old_folder, old_folder.parent / f".{old_folder.name}.old-1")
    (old_folder.parent / f".{old_folder.name}.saving-x").mkdir()
    with pytest.raises(FileExistsError):
        safe_save(HalfWriter(), old_folder)
    assert snapshot(old_folder) == before and leftovers(old_folder) == []


def test_merge_keeps_every_adapter_and_the_model_unmerged(two_adapters, tokenizer, tmp_path):
    batch = sample_batch(tokenizer)
    before = logits_of(two_adapters, batch)
    merged_dir = merge_to_folder(two_adapters, tmp_path / "merged", tmp_path / "adapters")

    # The learner's model: same adapters, still unmerged, same logits, still english_ner.
    assert two_adapters.active_adapters == ["english_ner"]
    assert not any(getattr(m, "merged", False) for m in two_adapters.modules())
    assert torch.equal(logits_of(two_adapters, batch), before)

    # Every adapter reloads from adapters_dir and reproduces its logits.
    from peft import PeftModel

    adapters = tmp_path / "adapters"
    assert "multi-adapter save" in diagnose(adapters).problems[0]
    for name in ("english_ner", "spanish_sentiment"):
        assert diagnose(adapters / name).ok
        reloaded = PeftModel.from_pretrained(load_base_model(), adapters, subfolder=name)
        two_adapters.set_adapter(name)
        check = compare_logits(two_adapters, reloaded, tokenizer, batch=batch)
        assert check.ok, f"{name}: {check}"
    two_adapters.set_adapter("english_ner")

    # The merged model: a clean full-model folder reproducing the active adapter, not the base.
    from transformers import AutoModelForCausalLM

    assert not (merged_dir / "adapter_config.json").exists() and (merged_dir / "model.safetensors").is_file()
    assert "holds a full model" in diagnose(merged_dir).problems[0]
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    check = compare_logits(two_adapters, merged, tokenizer, atol=1e-4, batch=batch)
    assert check.ok, str(check)
    assert not compare_logits(load_base_model(), merged, tokenizer, atol=1e-3, batch=batch).ok
    assert leftovers(merged_dir) == [] and leftovers(adapters) == []


def test_merge_refuses_a_non_empty_folder_before_writing(one_adapter, old_folder, tmp_path):
    before = snapshot(old_folder)
    with pytest.raises(FileExistsError, match="merged_dir .* is not empty"):
        merge_to_folder(one_adapter, old_folder, tmp_path / "adapters")
    assert snapshot(old_folder) == before and not (tmp_path / "adapters").exists()
    with pytest.raises(ValueError, match="overlap"):
        merge_to_folder(one_adapter, tmp_path / "x", tmp_path / "x" / "adapters")


def test_merge_needs_a_peft_model(tmp_path):
    with pytest.raises(TypeError, match="needs a PeftModel"):
        merge_to_folder(load_base_model(), tmp_path / "m", tmp_path / "a")


def test_bin_weights_load_with_weights_only(one_adapter, tmp_path):
    from safetensors.torch import load_file

    folder = safe_save(one_adapter, tmp_path / "bin", safe_serialization=False)
    assert "only adapter_model.bin" in diagnose(folder).problems[0]
    state = load_bin_adapter_weights(folder)
    expected = load_file(shipped_adapter("english_ner") / "adapter_model.safetensors")
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in expected)


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_malicious_bin_is_refused_not_run(tmp_path):
    marker = tmp_path / "code_ran"
    bad = tmp_path / "adapter_model.bin"
    torch.save({"w": torch.zeros(2), "x": Payload(str(marker))}, bad)
    with pytest.raises(ValueError, match=r"refused by torch.load\(weights_only=True\)") as e:
        load_bin_adapter_weights(bad)
    assert "\n" not in str(e.value) and not marker.exists()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_bin_adapter_weights(tmp_path / "nowhere")


# ---- set_base_model (lesson 2, section 4)
@pytest.fixture()
def colleague_adapter(tmp_path):
    """The shipped english_ner adapter as a colleague sent it: its config names a folder of their machine."""
    import json
    import shutil

    folder = Path(shutil.copytree(shipped_adapter("english_ner"), tmp_path / "theirs"))
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps(config | {"base_model_name_or_path": "/home/them/tiny"}))
    return folder


def test_set_base_model_repoints_keeps_a_backup_and_says_so(colleague_adapter, capsys, monkeypatch, tmp_path):
    import json

    from transformers import AutoModelForCausalLM

    from course_utils import course_model

    monkeypatch.chdir(tmp_path)
    original = (colleague_adapter / "adapter_config.json").read_bytes()
    with pytest.raises(OSError):
        AutoModelForCausalLM.from_pretrained(colleague_adapter)
    backup = tmp_path / set_base_model("theirs", course_model())  # the folder as the learner types it, relative
    line = capsys.readouterr().out
    assert line.startswith("theirs: ") and line.count("\n") == 1 and "'/home/them/tiny' -> '" in line
    assert line.rstrip().endswith("(old config: adapter_config.json.bak)")
    assert str(tmp_path) not in line  # the new folder is shown relative to the working folder
    assert backup == colleague_adapter / "adapter_config.json.bak" and backup.read_bytes() == original
    config = json.loads((colleague_adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(Path(course_model()).resolve())
    assert diagnose(colleague_adapter).ok
    from peft import PeftModel

    from course_utils import load_tokenizer

    reference = PeftModel.from_pretrained(load_base_model(), shipped_adapter("english_ner"))
    repaired = AutoModelForCausalLM.from_pretrained(colleague_adapter).eval()
    assert compare_logits(reference, repaired, load_tokenizer()).ok
    assert sorted(p.name for p in colleague_adapter.iterdir()) == [
        "README.md", "adapter_config.json", "adapter_config.json.bak", "adapter_model.safetensors"]


def test_set_base_model_never_overwrites_a_backup(colleague_adapter, capsys):
    from course_utils import course_model

    set_base_model(colleague_adapter, course_model())
    first_backup = (colleague_adapter / "adapter_config.json.bak").read_bytes()
    assert set_base_model(colleague_adapter, course_model()) is None  # already repointed: nothing written
    assert "nothing changed" in capsys.readouterr().out.splitlines()[-1]
    with pytest.raises(FileExistsError, match="already exists .*move it away first"):
        set_base_model(colleague_adapter, "openai-community/gpt2", revision="607a30d")
    assert (colleague_adapter / "adapter_config.json.bak").read_bytes() == first_backup


def test_set_base_model_records_a_hub_id_with_its_revision(colleague_adapter, capsys):
    import json

    set_base_model(colleague_adapter, "openai-community/gpt2", revision="607a30d")
    config = json.loads((colleague_adapter / "adapter_config.json").read_text())
    assert (config["base_model_name_or_path"], config["revision"]) == ("openai-community/gpt2", "607a30d")
    assert "revision '607a30d'" in capsys.readouterr().out


@pytest.mark.parametrize("base, error, needle", [
    ("", ValueError, "base is empty"),
    ("NO_CONFIG", ValueError, "holds no config.json"),
])
def test_set_base_model_bad_input_is_one_line_and_writes_nothing(colleague_adapter, tmp_path, base, error, needle):
    if base == "NO_CONFIG":
        base = tmp_path / "empty_folder"
        base.mkdir()
    before = snapshot(colleague_adapter)
    with pytest.raises(error, match=needle) as err:
        set_base_model(colleague_adapter, base)
    assert "\n" not in str(err.value) and snapshot(colleague_adapter) == before


def test_set_base_model_needs_an_adapter_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no adapter_config.json in"):
        set_base_model(tmp_path, "gpt2")

