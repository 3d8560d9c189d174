# Everything installs itself: a fresh machine needs only Python 3.11, Node and npm.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
# No AWS account here: never wait on the EC2 metadata service for credentials or a region.
export AWS_EC2_METADATA_DISABLED := true
export CDK_DISABLE_VERSION_CHECK := true

CDK_ARGS ?=
PYTEST_ARGS ?=

.PHONY: help synth test lint model bench bench-drift contracts contracts-check security-report cost clean deps

## help: list the targets a user runs
help:
	@sed -n 's/^## //p' $(MAKEFILE_LIST)

## deps: install the pinned Python and Node dependencies (every target does it first)
deps: $(VENV)/.deps-stamp node_modules/.deps-stamp

$(VENV)/.deps-stamp: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

# checkov pins boto3/botocore/packaging far below ours, so it lives in a venv of its own.
CHECKOV_VENV := $(VENV)/tools/checkov
$(CHECKOV_VENV)/bin/checkov: $(VENV)/.deps-stamp
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet checkov==3.3.30

node_modules/.deps-stamp: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

MODEL_DIST := model_container/dist
MODEL_SOURCES := model_container/build_model.py model_container/card.py model_container/evaluation.py \
	$(wildcard model_container/package.py) $(wildcard model_container/contract/*.py) $(wildcard model_container/dataset/*.py)
# Every file of the model packages (model_card.json, train.py, a pre-built package's files) and cdk.json, where
# ml-platform.defaults.model.source chooses one.
MODEL_PACKAGES := $(shell find model_container/models -type f -not -path '*/__pycache__/*' 2>/dev/null)

# The model build is deterministic (the card's seed) and takes seconds; synth reads its metadata and tarball.
$(MODEL_DIST)/metadata.json: $(VENV)/.deps-stamp $(MODEL_SOURCES) $(MODEL_PACKAGES) cdk.json
	$(BIN)/python -m model_container.build_model --out $(MODEL_DIST)

## model: build the model, its metadata, baseline and holdout sets into model_container/dist, then the contract
model: $(MODEL_DIST)/metadata.json contracts

## contracts: regenerate the API contract (request and response models, OpenAPI) from the model card (synth refuses a stale one)
contracts: $(MODEL_DIST)/metadata.json
	$(BIN)/python -m model_container.contract.generate

## synth: synthesize every environment offline, run all nag packs and cfn-lint, print a summary, redraw docs/architecture.md
synth: deps model
	rm -rf cdk.out
	npx cdk synth --no-notices --quiet $(CDK_ARGS)
	$(BIN)/cfn-lint
	$(BIN)/python -m scripts.synth_summary cdk.out
	$(BIN)/python -m scripts.architecture_diagram --cloud-assembly cdk.out --out docs/architecture.md

## test: run the whole suite (installs what is missing first)
test: deps model $(CHECKOV_VENV)/bin/checkov
	$(BIN)/pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

## security-report: synth, then nag/checkov/cfn-lint/IAM/encryption/logs/network review into reports/
security-report: deps model $(CHECKOV_VENV)/bin/checkov
	rm -rf cdk.out
	npx cdk synth --no-notices --quiet $(CDK_ARGS)
	$(BIN)/python scripts/security_report.py --cloud-assembly cdk.out --out reports

## cost: synth, then the monthly estimate per environment at idle and at RPS requests/s (default 50; prices: docs/prices)
RPS ?= 50
cost: deps model
	rm -rf cdk.out
	npx cdk synth --no-notices --quiet $(CDK_ARGS)
	$(BIN)/python -m scripts.cost_estimate --cloud-assembly cdk.out --rps $(RPS)

## contracts-check: fail if the committed API contract differs from the one generated from the model card
contracts-check: deps
	$(BIN)/python -m model_container.contract.generate --check

## bench: serving container vs the Flask/gunicorn/sklearn peer (needs wrk; not part of the tests)
bench: deps model
	command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
	$(BIN)/pip install --quiet -r model_container/bench/requirements.txt
	$(BIN)/python -m model_container.bench.run

## bench-drift: the drift job's streamed window on RECORDS (10 million) synthetic capture records (a fake S3; not a test)
RECORDS ?= 10000000
bench-drift: deps
	$(BIN)/python scripts/bench_drift.py --records $(RECORDS)

## lint: ruff (lint and format) and mypy over every package (each Lambda folder type-checked as its own code root, as it runs)
lint: deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy platform_config ml_constructs stacks scripts model_container app.py
	for fn in lambda_src/*/; do (cd $$fn && MYPYPATH=. $(CURDIR)/$(BIN)/mypy --explicit-package-bases .) || exit 1; done

## clean: remove cdk.out and the tools' caches
clean:
	rm -rf cdk.out .pytest_cache .mypy_cache .ruff_cache
