# Speaker diarization service. `make demo` runs the main job end to end, `make test`
# runs every test tier. Both install what they need, caching under $(CACHE_DIR).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CACHE_DIR ?= $(HOME)/.cache/diarization-service
PYTHON ?= python3
VENV := $(CACHE_DIR)/venv
PY := $(VENV)/bin/python
DEPS_HASH := $(shell cat setup.cfg pyproject.toml | sha256sum | cut -c1-16)
DEPS_STAMP := $(VENV)/.deps-$(DEPS_HASH)
BUNDLE := $(CACHE_DIR)/models/offline-default/bundle.json
DEBIAN_PACKAGES := ffmpeg espeak-ng sox libsndfile1

export CACHE_DIR
# the project runs from this checkout; the venv only holds its dependencies
export PYTHONPATH := $(CURDIR)
export PYANNOTE_METRICS_ENABLED := 0
export HF_HUB_OFFLINE ?= 1

# install_requires plus the test extra of setup.cfg, one requirement per line
define REQUIREMENTS
import configparser
cfg = configparser.ConfigParser()
cfg.read("setup.cfg")
print(cfg["options"]["install_requires"] + cfg["options.extras_require"]["test"])
endef
export REQUIREMENTS


.PHONY: help install system-deps venv models stack demo demo-http test test-unit test-http test-model bench clean-venv

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

install: system-deps venv models stack ## everything the demo and the tests need

system-deps: ## Debian packages: ffmpeg libraries (torchcodec), espeak-ng and sox (test audio)
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(DEPS_STAMP) ## Python dependencies in $(CACHE_DIR)/venv

$(DEPS_STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade --cache-dir $(CACHE_DIR)/pip pip setuptools wheel
	@# the dependencies only: the project itself runs from the checkout (PYTHONPATH)
	$(PYTHON) -c "$$REQUIREMENTS" > $(VENV)/requirements.txt
	$(PY) -m pip install --quiet --cache-dir $(CACHE_DIR)/pip -r $(VENV)/requirements.txt
	@rm -f $(VENV)/.deps-* && touch $@

models: $(BUNDLE) ## the offline default model bundle in $(CACHE_DIR)/models

$(BUNDLE): $(DEPS_STAMP) consumer/engine/bundle.py consumer/engine/campplus.py
	$(PY) -m consumer.engine.bundle build --force

stack: venv ## Kafka jars and a MinIO binary for the local stack (needs Java 17+, Maven, Go 1.24+)
	$(PY) local-dev/stack.py install

demo: install ## upload a recording to MinIO, get its diarization back as a Kafka result event
	$(PY) local-dev/demo.py

demo-http: install ## diarize the bundled sample through the synchronous HTTP API
	$(PY) local-dev/demo.py --http

test: install ## every test tier: unit, http, model (real bundle), integration (real Kafka + MinIO)
	$(PY) -m pytest tests

test-unit: venv ## pure-logic tests only
	$(PY) -m pytest tests/unit

bench: install ## benchmarks (figures printed; see bench/README.md)
	$(PY) bench/engine_rtf.py

clean-venv: ## remove the cached venv (the next run reinstalls from the pip cache)
	rm -rf $(VENV)
