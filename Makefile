# goldisk: two commands for a new user.
#   make demo   set up .venv if needed, then run the main job (`goldisk sweep`) on the embedded digits
#   make test   set up .venv if needed, then run the test suite and `ruff check`
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CUDA build of torch also runs on CPU; override TORCH_SPEC for another build.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
EXTRAS ?= dev,distributed,data
STAMP := $(VENV)/.goldisk-installed
DEMO_OUT ?= out/sweep
PYTEST_ARGS ?= -n 2

.PHONY: demo test lint bench clean setup

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/goldisk sweep --out $(DEMO_OUT) --force

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)
	$(VENV)/bin/ruff check goldisk tests benchmarks

lint: $(STAMP)
	$(VENV)/bin/ruff check goldisk tests benchmarks

bench: $(STAMP)
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) benchmarks/bench_hessian.py

clean:
	rm -rf $(VENV) out build *.egg-info
