# One pinned environment (.venv) for the whole package, the TF Object Detection API included.
# `make venv` installs the package editable: the `cxr-keras` command (and `cxr-NAME` per command) and
# the start-up hook that lets `python -m object_detection.model_main_tf2 ...` run unchanged.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CLI    := $(VENV)/bin/cxr-keras
OUT    ?= runs/demo
PRESET ?= demo
export PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION := python
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: venv venv-gpu browser demo quick test test-fast bench od-configs clean-venv

# GPU=1 (or `make venv-gpu`): requirements/lock-gpu.txt instead, i.e. the same lock plus
# tensorflow[and-cuda]==2.15.1's CUDA wheels (docs/scaling.md); pass GPU=1 to `make demo`/`test` too.
GPU   ?=
LOCK  := requirements/lock$(if $(GPU),-gpu).txt
STAMP := $(VENV)/.installed$(if $(GPU),-gpu)

venv: $(STAMP)

venv-gpu:
	$(MAKE) venv GPU=1

# setup.py writes the console scripts (from cxr_keras/cli/__init__.py's COMMANDS) and the hook's .pth.
$(STAMP): $(LOCK) requirements/lock.txt setup.py cxr_keras/cli/__init__.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# Debian's Chromium for the reader-study browser test (Playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

# The main job on the embedded default dataset (README, first command).
demo: venv
	$(CLI) run_pipeline --preset $(PRESET) --out $(OUT)

quick: venv
	$(CLI) run_pipeline --preset quick --out runs/quick

# The whole test suite, slow end-to-end tests included (README, second command; .ci/run).
test: venv browser
	$(PY) -m pytest -q -rs --durations=15

test-fast: venv
	$(PY) -m pytest -q -m "not slow"

bench: venv
	$(PY) benchmarks/records.py
	$(PY) benchmarks/gan_step.py

# The paper's OD API configs checked in under od_configs/paper/ (a test fails when they drift).
od-configs: venv
	$(PY) -c "from cxr_keras.detection.configs import write_repo_configs; write_repo_configs('od_configs/paper')"

clean-venv:
	rm -rf $(VENV)
