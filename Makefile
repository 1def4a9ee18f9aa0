# Two commands set everything up on a fresh machine:  make demo  /  make test
# TORCH_SPEC pins the CPU build of torch (it lies on this machine's disk). A GPU
# user installs a CUDA build first, e.g.
#   make install TORCH_SPEC="torch==2.13.0 --index-url <your CUDA wheel index>"
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.cortex-resnet-installed
PYTEST_ARGS ?=
# 6 workers on 2 cores: on a shared machine the suite gets a fairer share of the CPU (beside two
# busy loops, 2 workers took 11 min 42 s at 1321 tests, 4 workers 10 min 33 s at 1393 tests); on an
# idle machine it costs nothing measurable. --no-loadscope-reorder: modules are handed out in
# collection order, which tests/conftest.py (HEAVY_FIRST) starts with the longest ones
TEST_WORKERS ?= 6

.PHONY: install test package-check validate demo bench figures gpu-check clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# the layer contract (.importlinter), ruff (pyproject.toml), then the default suite
test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder -m "not slow" $(PYTEST_ARGS)

# The wheel, installed with --no-deps into a fresh venv outside the source tree, runs
# `simulate canonical_microcircuit` and `hypothesis run isn-paradox --quick` from an
# empty directory (offline: no build isolation; ~3 min on 2 busy cores)
package-check: $(STAMP)
	$(PY) -m pytest -q -m slow -p no:cacheprovider tests/test_packaging.py

validate: $(STAMP)
	$(PY) -m pip install -q -e ".[validate]" || echo "nest-simulator not installable here: the NEST checks are skipped"
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

demo: $(STAMP)
	$(VENV)/bin/cortex-resnet demo --out demo_out

bench: $(STAMP)
	$(VENV)/bin/cortex-resnet bench all

figures: $(STAMP)
	$(VENV)/bin/cortex-resnet figures all

# Everything that needs a GPU, once (<= 10 min on an H100/H200): gpu-marked tests, rate
# simulator CPU/GPU parity and speed, bf16 training, a ResNet-20 epoch, a 1-process NCCL
# DDP step; one JSON on stdout and in gpu_check.json. Without a GPU: the CPU parts only.
GPU_CHECK_OUT ?= gpu_check_$(shell date +%Y%m%d_%H%M%S).json
gpu-check: $(STAMP)
	$(PY) -m cortex_resnet.bench.gpu_check --out $(GPU_CHECK_OUT)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info  # never demo_out/ or runs/: results are yours
