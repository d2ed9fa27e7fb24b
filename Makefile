# One pinned environment (.venv) for the whole package, the TF Object Detection API included.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
OUT    ?= runs/demo
PRESET ?= demo
export PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION := python
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: venv browser demo quick test test-fast bench clean-venv

venv: $(VENV)/.installed

$(VENV)/.installed: requirements/lock.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements/lock.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# Debian's Chromium for the reader-study browser test (Playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

# The main job on the embedded default dataset (README, first command).
demo: venv
	$(PY) scripts/run_pipeline.py --preset $(PRESET) --out $(OUT)

quick: venv
	$(PY) scripts/run_pipeline.py --preset quick --out runs/quick

# The whole test suite, slow end-to-end tests included (README, second command; .ci/run).
test: venv browser
	$(PY) -m pytest -q -rs --durations=15

test-fast: venv
	$(PY) -m pytest -q -m "not slow"

bench: venv
	$(PY) benchmarks/records.py
	$(PY) benchmarks/gan_step.py

clean-venv:
	rm -rf $(VENV)
