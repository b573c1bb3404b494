# Two commands on a fresh machine: `make demo` and `make test` (`make test-fast` leaves out the
# tests marked slow). Each creates .venv if missing and installs every extra (pip install -e ".[all]").
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch 2.14.1 + torchaudio 2.11 load together on these CPUs (torch's wheel is on disk here);
# on a GPU machine any torch/torchaudio pair that pip resolves works.
TORCH_PINS ?= torch==2.14.1 torchaudio==2.11.0

.PHONY: setup demo test test-fast system-deps clean-venv

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e ".[all]"
	@touch $@

setup: $(VENV)/.installed

# Debian packages used by the recipes and the scorer (TTS engines, classical codecs, real prompts).
system-deps:
	@bash recipes/install_system_deps.sh || echo "warning: system packages could not be installed; the recipe tests will be skipped"

demo: setup
	$(PY) -m codec.demo --out exp/demo
	$(PY) -m dialogue.demo --bundled --out exp/demo

test: setup system-deps
	$(PY) -m pytest tests

# the tests not marked slow (no recipe runs): a few minutes on two cores
test-fast: setup system-deps
	$(PY) -m pytest tests -m "not slow"

clean-venv:
	rm -rf $(VENV)
