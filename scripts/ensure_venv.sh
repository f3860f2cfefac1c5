#!/usr/bin/env bash
# Create .venv with the course's pinned stack, install course_utils editable and register the
# course's Jupyter kernel (scripts/register_kernel.py) and JupyterLab settings (scripts/lab_settings.py). Idempotent: when .venv already matches pyproject.toml it installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

pick_python() {
  for cand in "${PYTHON:-}" python3.11 python3 python; do
    [ -n "$cand" ] || continue
    if command -v "$cand" >/dev/null 2>&1 && \
       "$cand" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
      echo "$cand"; return 0
    fi
  done
  return 1
}

want=$(sha256sum pyproject.toml | cut -c1-16)
stamp="$VENV/.course-installed"
# Byte-compile course_utils once: with PYTHONDONTWRITEBYTECODE set (as on CI machines), every notebook kernel
# would otherwise compile it again from source. Quiet, and quick when nothing changed.
compile_course_utils() { "$VENV/bin/python" -m compileall -q course_utils >/dev/null; }

if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup: $VENV is up to date with pyproject.toml (nothing to install)"
  compile_course_utils
  "$VENV/bin/python" scripts/register_kernel.py --quiet
  "$VENV/bin/python" scripts/lab_settings.py
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  py=$(pick_python) || { echo "setup: Python 3.11 is needed: install it (or use 'conda env create -f environment.yml')" >&2; exit 1; }
  echo "setup: creating $VENV with $($py --version)"
  "$py" -m venv "$VENV"
fi
start=$(date +%s)
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[test,instructor]"
echo "$want" > "$stamp"
echo "setup: installed the pinned stack into $VENV in $(( $(date +%s) - start )) s"
compile_course_utils
"$VENV/bin/python" scripts/register_kernel.py
"$VENV/bin/python" scripts/lab_settings.py
