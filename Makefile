# The course's commands. `make lab` to learn, `make test` to check everything.
VENV   ?= .venv
PY     := $(VENV)/bin/python
LAB_ARGS ?=
export HF_HUB_OFFLINE := 1
export PYTHONHASHSEED := 0

.PHONY: help setup lab test test-fast check-notebooks outputs doctor assets clean

help:
	@echo "make lab             set up .venv (first run only) and open JupyterLab on notebooks/"
	@echo "make test            set up .venv (first run only) and run every test and notebook check"
	@echo "make outputs         re-execute every notebook and store its outputs"
	@echo "make doctor          check versions, device and every adapter load path"
	@echo "make assets          rebuild the shipped tiny model and adapters (a few minutes)"

setup:
	@bash scripts/ensure_venv.sh

lab: setup
	$(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/notebooks $(LAB_ARGS)

test: setup
	$(PY) -m pytest -n 2 tests
	$(MAKE) --no-print-directory check-notebooks

check-notebooks: setup
	$(PY) -m pytest -n 2 --dist loadfile --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:randomly notebooks exercises

outputs: setup
	$(PY) -m course_utils execute notebooks/*.ipynb exercises/solutions/*.ipynb exercises/*.ipynb

doctor: setup
	$(PY) -m course_utils doctor

assets: setup
	$(PY) -m course_utils build-assets

clean:
	rm -rf $(VENV) .pytest_cache test-output
