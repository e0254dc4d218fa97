# Two commands from nothing but Python: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.clipcrop-installed
# The demo needs the base package (no torch), the subject detectors and the sample photos.
DEMO_STAMP := $(VENV)/.clipcrop-demo
# The torch/torchvision pair this project is tested with. pip takes it from the local
# wheel cache where one exists; override (TORCH_SPEC="torch torchvision") on other platforms.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
SAMPLE_DIR ?= sample-library

.PHONY: install demo test test-slow clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(DEMO_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[demo,subjects]"
	touch $(DEMO_STAMP)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install $(TORCH_SPEC)
	$(PY) -m pip install -e ".[dev,demo]"
	touch $(STAMP) $(DEMO_STAMP)

install: $(STAMP)

demo: $(DEMO_STAMP)
	$(PY) examples/make_sample_library.py $(SAMPLE_DIR)
	$(VENV)/bin/clipcrop suggest $(SAMPLE_DIR) --aspect 1:1 --aspect 16:9 --top 1

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -m "not slow" -q

test-slow: $(STAMP)
	$(PY) -m pytest -m "slow" -q || [ $$? -eq 5 ]

clean:
	rm -rf $(VENV) $(SAMPLE_DIR) build *.egg-info
