import subprocess
import sys

import pytest

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
