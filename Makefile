# The course's commands. `make lab` to learn, `make test` to check everything.
VENV   ?= .venv
PY     := $(VENV)/bin/python
LAB_ARGS ?=
# Notebook kernels at once: the usable cores plus one. A kernel sits idle while it starts and shuts down (about
# 0.4 s of the 0.6 s it takes per notebook here), and the extra kernel fills those gaps. On 2 cores the floor
# ratio `make bench` reports averaged 1.23x (16 runs) against 1.28x with one kernel per core (9 runs).
# nproc answers OMP_NUM_THREADS when it is set (make test sets it to 1 for torch): ask without it.
NBVAL_JOBS ?= $(shell echo $$(( $$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) + 1 )))
HF_HUB_OFFLINE ?= 1
export HF_HUB_OFFLINE
export PYTHONHASHSEED := 0

.PHONY: help setup lab lab-instructor test lint check-notebooks outputs doctor assets bench clean

help:
	@echo "make lab             set up .venv (first run only) and open JupyterLab on notebooks/"
	@echo "make lab-instructor  the same JupyterLab with nbgrader's menu, Validate button and formgrader"
	@echo "make test            set up .venv (first run only) and run every test and notebook check"
	@echo "make outputs         re-execute every notebook and store its outputs"
	@echo "make doctor          check versions, device and every adapter load path"
	@echo "make assets          rebuild the shipped tiny models (GPT-2, Llama) and adapters (a few minutes)"
	@echo "make check-notebooks strict nbval on every lesson, solution and student copy, in parallel"
	@echo "make lint            ruff, deptry and vulture (make test runs it)"
	@echo "make bench           adapter vs full-model size, save/load/switch time and memory -> benchmarks/"

setup:
	@bash scripts/ensure_venv.sh

# Jupyter refuses to start as root (a container, a cloud VM) unless told; say so instead of failing.
ROOT_ARGS := $(if $(filter 0,$(shell id -u)),--allow-root)

# Opens on the start page, in the course's workspace and settings (scripts/lab_settings.py), and offers only the
# kernel the notebooks name (python3, the venv's: scripts/register_kernel.py).
LAB_CMD = $(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" \
		--LabApp.default_url=/lab/workspaces/peft-course/tree/notebooks/START_HERE.md \
		--KernelSpecManager.allowed_kernelspecs=python3 $(ROOT_ARGS) $(LAB_ARGS)
# Learners see no nbgrader: config/learner-lab turns its lab extension and server extensions off (stock
# Jupyter config, read first through JUPYTER_CONFIG_PATH). The instructor's lab reads only the venv's config.
lab: setup
	@$(if $(ROOT_ARGS),echo "lab: running as root (a container?): adding --allow-root")
	JUPYTER_CONFIG_PATH="$(CURDIR)/config/learner-lab" $(LAB_CMD)

lab-instructor: setup
	@$(if $(ROOT_ARGS),echo "lab-instructor: running as root (a container?): adding --allow-root")
	$(LAB_CMD)

test: export OMP_NUM_THREADS := 1
test: setup lint
	$(PY) -m pytest -n 2 --dist loadfile --durations=10 tests
	$(MAKE) --no-print-directory check-notebooks

# ruff: style, bugs, complexity. deptry: every import is declared in pyproject.toml. vulture: no dead code.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/deptry .
	$(VENV)/bin/vulture

# Strict nbval, one notebook per xdist worker at a time (a notebook's cells share one kernel). `make bench`
# reports how this command's wall time compares with the floor N x t / c (N notebooks, t a bare
# `import peft`, c cores). Two stock pytest switches save each pytest process time the notebooks do not need
# (measured): no hypothesis plugin (it imports all of hypothesis as each process ends, 0.7 s) and no assertion
# rewriting of plugin modules (`--assert=plain`, 0.3 s; a notebook cell's assert is not rewritten anyway).
NOTEBOOKS := notebooks/*.ipynb exercises/solutions/*.ipynb exercises/*.ipynb
check-notebooks: export OMP_NUM_THREADS := 1
check-notebooks: setup
	$(PY) -m pytest -p no:hypothesispytest --assert=plain --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg \
		-n $(NBVAL_JOBS) --dist loadfile -q $(NOTEBOOKS)

outputs: setup
	$(PY) -m course_utils execute notebooks/*.ipynb exercises/solutions/*.ipynb
	$(PY) -m course_utils exercises build

doctor: setup
	$(PY) -m course_utils doctor

assets: setup
	$(PY) -m course_utils build-assets

# The lessons that show the benchmark's rows are re-executed, so their stored outputs match the new results;
# then `make check-notebooks` is timed against its floor (benchmarks/floor_ratios.md).
bench: setup
	$(PY) -m course_utils.maintenance.bench
	$(PY) -m course_utils execute $$(grep -l 'bench_table(' notebooks/*.ipynb)
	$(PY) -m course_utils.maintenance.floor_ratios

clean:
	rm -rf $(VENV) .pytest_cache test-output
