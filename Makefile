# The few verbs a newcomer types. Everything installs what it needs on first use.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PYTHONPATH := operator:.

.PHONY: deps demo test unit e2e bench crds lint clean control-plane fuzz image

$(BIN)/python: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/python

deps: $(BIN)/python ## Python deps, Prometheus (apt) and the control plane (Go modules, cached)
	bash e2e/install-deps.sh

control-plane: deps
	bash e2e/build-control-plane.sh >/dev/null

demo: deps control-plane ## the operator on the local control plane, a model rolled out through a canary
	$(BIN)/python -m e2e.demo

test: deps control-plane lint ## every test: unit, then e2e against the real control plane
	bash e2e/build-prometheus-k8s-sd.sh >/dev/null
	$(BIN)/python -m pytest tests e2e -q -p no:cacheprovider

unit: $(BIN)/python
	$(BIN)/python -m pytest tests -q

e2e: deps control-plane
	bash e2e/build-prometheus-k8s-sd.sh >/dev/null
	$(BIN)/python -m pytest e2e -q

BENCH_ARGS ?= --sizes 100,300,1000 --idle-minutes 5 --small-idle-minutes 1 --spec-changes 20 --canaries 50 --delete 100 --outage-seconds 60 --argo --argo-idle-minutes 2
bench: deps control-plane ## issue 10's targets at 100/300/1000 objects, and Argo Rollouts side by side: bench-results/
	bash tools/argo-rollouts/build.sh >/dev/null
	nice $(BIN)/python -m e2e.bench $(BENCH_ARGS)

fuzz: deps control-plane ## the long fuzz run: thousands of manifests against the real API server (e2e/test_fuzz.py)
	ROLLGUARD_FUZZ_EXAMPLES=$${ROLLGUARD_FUZZ_EXAMPLES:-5000} $(BIN)/python -m pytest e2e/test_fuzz.py -q -s -p no:cacheprovider

crds: $(BIN)/python ## regenerate crds/ (and the chart's copy) from the pydantic models
	$(BIN)/python -m rollguard.api.crdgen

lint: $(BIN)/python
	$(BIN)/ruff check operator tests e2e
	$(BIN)/ruff format --check operator tests e2e
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile
	$$(bash tools/build-go-tools.sh actionlint) -color=false .github/workflows/*.yml

image: ## the operator image, built with podman (no Docker engine), tagged localhost/rollguard:dev
	bash tools/image/build.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
