# Two commands on a fresh clone:  make reproduce-table   and   make test
# Override the interpreter or the torch build, e.g.
#   make test PYTHON=python3.11
#   make test TORCH_SPEC="torch==2.14.1 torchvision==0.29.1" TORCH_INDEX=https://download.pytorch.org/whl/cpu

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
TORCH_INDEX ?=
EXTRAS ?= test,figures,metrics,sd,cluster
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.sige-installed
SOURCES := pyproject.toml engine/pyproject.toml engine/setup.py $(shell find engine/csrc -type f 2>/dev/null)
export SIGE_DATA_MIRROR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)

.PHONY: install test lint reproduce-table reproduce-throughput check-memory reproduce-quality bench-engine figures gpu-check clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first (the native kernels build against it without build isolation), then the engine, then the suite.
$(STAMP): $(PY) $(SOURCES)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),) $(TORCH_SPEC)
	$(PIP) install -q --no-build-isolation -e engine
	$(PIP) install -q -e '.[$(EXTRAS)]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# LAUNCHER=local (default: one job after another) | joblib | ray | ray_cluster | slurm | submitit_local;
# ARGS: more overrides, e.g. ARGS="hydra.launcher.partition=cpu hydra.launcher.cpus_per_task=32"
reproduce-table: $(STAMP)
	$(PY) scripts/reproduce_table.py $(if $(QUICK),--quick,) $(if $(FORCE),--force,) $(if $(LAUNCHER),--launcher $(LAUNCHER),) $(ARGS)

# images/s and memory by batch size (results/throughput.csv; TABLE.md shows them after the next reproduce-table)
reproduce-throughput: $(STAMP)
	$(PY) scripts/run.py -m task=throughput model=engine_conv,ddpm_church256 edit=synthetic edit.area=0.02 \
		task.max_batch=8 $(ARGS)

# peak_mem_mb checked against the resident-set growth of a fresh process (results/memory.csv, a TABLE.md section)
check-memory: $(STAMP)
	$(PY) scripts/run.py task=memory model=sd14 component=unet edit=sd_sdedit0 $(ARGS)
	$(PY) scripts/run.py task=memory model=ddpm_church256 edit=church_example $(ARGS)

reproduce-quality: $(STAMP)
	$(PY) scripts/reproduce_quality.py

bench-engine: $(STAMP)
	$(PY) scripts/bench_engine.py

figures: $(STAMP)
	$(PY) scripts/make_figures.py

# On a machine with a GPU: builds the CUDA kernels for that machine's own torch (GPU_PYTHON, default
# this venv's python if there is one, else python3) and runs the CUDA-vs-reference tests; fails, never
# skips, when it cannot. Logs go to LOG.
LOG ?= logs/gpu-check
GPU_PYTHON ?= $(if $(wildcard $(PY)),$(PY),python3)
gpu-check:
	$(GPU_PYTHON) engine/tools/gpu_check.py $(LOG)

clean-venv:
	rm -rf $(VENV)
