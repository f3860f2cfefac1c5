# The course's commands. `make lab` to learn, `make test` to check everything.
VENV   ?= .venv
PY     := $(VENV)/bin/python
LAB_ARGS ?=
MAX_RATIO ?= 1.25
HF_HUB_OFFLINE ?= 1
export HF_HUB_OFFLINE
export PYTHONHASHSEED := 0

.PHONY: help setup lab test test-fast check-notebooks outputs doctor assets bench clean

help:
	@echo "make lab             set up .venv (first run only) and open JupyterLab on notebooks/"
	@echo "make test            set up .venv (first run only) and run every test and notebook check"
	@echo "make outputs         re-execute every notebook and store its outputs"
	@echo "make doctor          check versions, device and every adapter load path"
	@echo "make assets          rebuild the shipped tiny model and adapters (a few minutes)"
	@echo "make check-notebooks strict nbval on every notebook, in parallel, within MAX_RATIO x the import floor"
	@echo "make bench           adapter vs full-model size, save/load/switch time and memory -> benchmarks/"

setup:
	@bash scripts/ensure_venv.sh

# Jupyter refuses to start as root (a container, a cloud VM) unless told; say so instead of failing.
ROOT_ARGS := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: setup
	@$(if $(ROOT_ARGS),echo "lab: running as root (a container?): adding --allow-root")
	$(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/notebooks $(ROOT_ARGS) $(LAB_ARGS)

# In `make test` the notebook timing ratio is reported, not enforced (a test never asserts a wall-clock
# time); `make check-notebooks` alone fails above MAX_RATIO x the import floor.
test: export OMP_NUM_THREADS := 1
test: setup
	$(PY) -m pytest -n 2 --dist loadfile tests
	$(MAKE) --no-print-directory check-notebooks MAX_RATIO=inf

check-notebooks: setup
	$(PY) scripts/check_notebooks.py --max-ratio $(MAX_RATIO)

outputs: setup
	$(PY) -m course_utils execute notebooks/*.ipynb exercises/solutions/*.ipynb
	$(PY) -m course_utils exercises build

doctor: setup
	$(PY) -m course_utils doctor

assets: setup
	$(PY) -m course_utils build-assets

# The lessons that show the benchmark's rows are re-executed, so their stored outputs match the new results.
bench: setup
	$(PY) -m course_utils.maintenance.bench
	$(PY) -m course_utils execute $$(grep -l 'bench_table(' notebooks/*.ipynb)

clean:
	rm -rf $(VENV) .pytest_cache test-output
