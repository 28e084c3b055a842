# Two commands do everything: `make demo` (the main job) and `make test`. Each sets itself up.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= demo_out
NATIVE_SRC := $(shell find csrc -type f 2>/dev/null) CMakeLists.txt setup.py pyproject.toml

.PHONY: demo test test-slow setup build info bench clean

demo: build
	$(BIN)/python -m mindcore demo --out $(OUT)

test: build
	$(BIN)/python -m mindcore.info
	$(BIN)/python -m pytest tests

# The tests marked slow (deselected by default); CI runs them after `make test`.
test-slow: build
	$(BIN)/python -m pytest tests -m slow || [ $$? -eq 5 ]  # 5: none collected

setup: $(VENV)/.deps
build: $(VENV)/.built

# torch first, from the CPU build on this disk (an unpinned torch pulls a multi-GB CUDA build).
$(VENV)/.deps: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0 || $(BIN)/pip install -q "torch>=2.4,<=2.14.1"
	$(BIN)/pip install -q setuptools wheel "pybind11>=2.12" "cmake>=3.22" ninja
	touch $@

# Always --no-build-isolation: an isolated build would pull its own (CUDA) torch.
$(VENV)/.built: $(VENV)/.deps $(NATIVE_SRC)
	MAX_JOBS=$${MAX_JOBS:-2} $(BIN)/pip install -q --no-build-isolation -e ".[dev]"
	touch $@

info: build
	$(BIN)/python -m mindcore.info

bench: build
	$(BIN)/python -m benchmarks.bench_perspective_ce --dtypes fp32,bf16 --reps 3 --providers floor,eager,reference,cpu,triton,cuda

clean:
	rm -rf build $(VENV) *.egg-info mindcore/_C*.so
