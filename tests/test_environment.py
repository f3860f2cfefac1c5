"""The setup files agree with each other and with the README."""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==(\S+)$")


def _norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(reqs):
    return {_norm(m.group(1)): m.group(2) for r in reqs if (m := PIN.match(r.strip()))}


def test_environment_yml_takes_its_pins_from_pyproject():
    """One place for the pins: conda installs the project itself, so a version bump changes one line."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11,<3.12"
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "python=3.11" in env["dependencies"]
    assert pip_section == ["-e .[test]"]
    assert not _pins(pip_section)
    pinned = _pins(project["dependencies"])
    assert {"torch", "transformers", "peft"} <= set(pinned)


def test_ci_and_readme_use_the_same_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme and "conda env create -f environment.yml" in readme


def test_readme_syllabus_links_exist():
    readme = (ROOT / "README.md").read_text()
    for link in re.findall(r"\]\(((?:notebooks|exercises)/[^)]+)\)", readme):
        assert (ROOT / link).exists(), f"README links to missing {link}"


def test_nbformat_import_builds_no_uri_parser():
    """Every notebook runner imports nbformat, which imports jsonschema. jsonschema 4.25+ also imports
    rfc3987_syntax, which builds a grammar at import (0.9 s per process, measured): pyproject.toml pins the newest
    jsonschema without it. Bumping that pin past 4.24 fails here."""
    code = "import sys, nbformat; print('rfc3987_syntax' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "False", "jsonschema now imports rfc3987_syntax: keep jsonschema at 4.24.x"
