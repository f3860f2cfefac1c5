import subprocess
import sys

import pytest

from course_utils import shipped_adapter
from course_utils.__main__ import main


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "doctor" in out and "build-assets" in out


def test_unknown_command_is_a_usage_error():
    run = subprocess.run([sys.executable, "-m", "course_utils", "frobnicate"], capture_output=True, text=True)
    assert run.returncode == 2 and "invalid choice" in run.stderr and "Traceback" not in run.stderr


def test_diagnose_for_an_engine_prints_one_line_per_finding(capsys):
    folder = str(shipped_adapter("spanish_sentiment"))
    assert main(["diagnose", "--for", "vllm", folder]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[1].startswith("- vLLM has no LoRA support for GPT2LMHeadModel")
    assert main(["diagnose", "--for", "vLLM", folder]) == 2
    err = capsys.readouterr().err
    assert err == "diagnose --for vLLM: unknown engine 'vLLM': choose one of vllm, tgi, llama.cpp.\n"


def test_export_gguf_command(tmp_path, capsys):
    out = tmp_path / "spanish.gguf"
    assert main(["export-gguf", str(shipped_adapter("spanish_sentiment")), "--out", str(out)]) == 0
    assert out.is_file() and capsys.readouterr().out.startswith(f"wrote {out}")
    assert main(["export-gguf", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
