# Speaker diarization service. `make demo` runs the main job end to end, `make test`
# runs every test tier. Both install what they need, caching under $(CACHE_DIR).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CACHE_DIR ?= $(HOME)/.cache/diarization-service
PYTHON ?= python3
VENV := $(CACHE_DIR)/venv
PY := $(VENV)/bin/python
# Python packages come only from the hash-locked files in requirements/ (see `make lock`);
# the venv is rebuilt whenever the test lock's content changes.
RUNTIME_LOCK := requirements/runtime.lock
TEST_LOCK := requirements/test.lock
TOOLS_LOCK := requirements/tools.lock
# uv compiles every module to bytecode at install: without it each process compiles what it
# imports again (where PYTHONDONTWRITEBYTECODE is set), 9 s more CPU for importing pyannote.audio.
UV_INSTALL_FLAGS := --require-hashes --no-deps --compile-bytecode
DEPS_HASH := $(shell { cat $(TEST_LOCK); echo '$(UV_INSTALL_FLAGS)'; } | sha256sum | cut -c1-16)
DEPS_STAMP := $(VENV)/.deps-$(DEPS_HASH)
TOOLS := $(CACHE_DIR)/tools
UV := $(TOOLS)/bin/uv
TOOLS_STAMP := $(TOOLS)/.deps-$(shell sha256sum $(TOOLS_LOCK) | cut -c1-16)
export UV_CACHE_DIR := $(CACHE_DIR)/uv
# The locks are for the platforms the service runs on: CPython 3.11, x86_64 Linux (manylinux).
LOCK_FLAGS := --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes \
  --constraint requirements/constraints.txt --custom-compile-command 'make lock' --quiet
# Stamps are named by the content they stand for (a lock's hash, the bundle code's), never
# compared by file times: in a fresh clone every file is new, and nothing the cache already
# holds is rebuilt.
BUNDLE := $(CACHE_DIR)/models/.offline-default-$(shell cat consumer/engine/bundle.py consumer/engine/campplus.py | sha256sum | cut -c1-16)
AMI := $(CACHE_DIR)/ami/train/train.uem
# chromium, chromium-driver: the results page's tests; buildah: make image, make build and the
# image tier; debootstrap: the stand-in base (make image)
DEBIAN_PACKAGES := ffmpeg espeak-ng sox libsndfile1 chromium chromium-driver buildah debootstrap

export CACHE_DIR
# the linters' caches live with everything else make caches (a fresh clone starts warm)
export RUFF_CACHE_DIR := $(CACHE_DIR)/ruff
export MYPY_CACHE_DIR := $(CACHE_DIR)/mypy
# make test: pytest-xdist workers, each with its own stack instance (tests/support/balance.py);
# 4 on 2 cores, because much of the integration tier waits (restarts, backoffs, timeouts);
# each process runs torch on one thread (tests/conftest.py)
TEST_WORKERS ?= 4
# the project runs from this checkout; the venv only holds its dependencies
export PYTHONPATH := $(CURDIR)
export PYANNOTE_METRICS_ENABLED := 0
export HF_HUB_OFFLINE ?= 1

.PHONY: help install system-deps venv tools lock upgrade-lock models ami stack image demo demo-http serve screenshots lint format test test-unit test-repo test-image audit bench clean-venv

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

install: system-deps venv models ami stack ## everything the demo and the tests need

system-deps: ## Debian packages: ffmpeg libraries (torchcodec), espeak-ng and sox (test audio), chromium and chromium-driver (the results page's tests), buildah and debootstrap (the image)
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(DEPS_STAMP) ## Python dependencies in $(CACHE_DIR)/venv, exactly as $(TEST_LOCK) says

# A fresh venv per lock, so nothing outside the lock survives an upgrade; uv installs
# from its cache in seconds. --no-deps: the lock already lists every transitive package.
$(DEPS_STAMP): | $(TOOLS_STAMP)
	rm -rf $(VENV) && $(PYTHON) -m venv $(VENV)
	@# the dependencies only: the project itself runs from the checkout (PYTHONPATH)
	$(UV) pip install --quiet --python $(PY) $(UV_INSTALL_FLAGS) -r $(TEST_LOCK)
	touch $@

tools: $(TOOLS_STAMP) ## the pinned locking tool (uv) in $(CACHE_DIR)/tools

$(TOOLS_STAMP):
	rm -rf $(TOOLS) && $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --cache-dir $(CACHE_DIR)/pip --require-hashes --no-deps -r $(TOOLS_LOCK)
	touch $@

lock: tools ## re-resolve requirements/*.lock from setup.cfg, keeping current pins where allowed
	$(UV) pip compile setup.cfg $(LOCK_FLAGS) $(LOCK_UPGRADE) -o $(RUNTIME_LOCK)
	@# the test lock extends the runtime lock: shared packages have one version in both
	$(UV) pip compile setup.cfg --extra test $(LOCK_FLAGS) $(LOCK_UPGRADE) -c $(RUNTIME_LOCK) -o $(TEST_LOCK)

upgrade-lock: ## move every pin to the newest version setup.cfg allows (then run make test)
	$(MAKE) lock LOCK_UPGRADE=--upgrade

models: $(BUNDLE) ## the offline default model bundle in $(CACHE_DIR)/models
	@# built by this code already; rebuilt if it went missing since
	@$(PY) -m consumer.engine.bundle path >/dev/null || $(PY) -m consumer.engine.bundle build

$(BUNDLE): | $(DEPS_STAMP)
	$(PY) -m consumer.engine.bundle build --force
	touch $@

ami: $(AMI) ## real meeting excerpts (AMI, train split of pyannote.audio's test data) in $(CACHE_DIR)/ami

$(AMI): | $(DEPS_STAMP)
	$(PY) -m tests.support.ami

stack: venv ## Kafka jars and a MinIO binary for the local stack (needs Java 17+, Maven, Go 1.24+)
	$(PY) local-dev/stack.py install

# The image from the Containerfile, built with buildah on storage under $(CACHE_DIR)/image
# (overlay driver, layer cache: a source change rebuilds the small source layer only). The
# runtime lock's wheels and the offline bundle go in from the cache: no network once they
# are there. On the Debian stand-in base, loudly, where the pinned UBI base cannot be pulled.
LOCAL_IMAGE := localhost/diarization-service:dev

image: system-deps venv models ## build the image from the Containerfile as $(LOCAL_IMAGE) (what make test starts)
	$(PY) local-dev/image.py build --tag $(LOCAL_IMAGE)

demo: install ## upload a recording to MinIO, get its diarization back as a Kafka result event
	$(PY) local-dev/demo.py

demo-http: install ## diarize the bundled sample through the synchronous HTTP API
	$(PY) local-dev/demo.py --http

serve: models ## the HTTP shim on http://127.0.0.1:8080 (HOST, PORT, API_KEY from the environment): the API, and the results page at /
	HOST=$${HOST:-127.0.0.1} $(PY) -m http_shim.server

screenshots: install ## the results page's screenshots in docs/ (runs the browser tier, which takes them)
	SCREENSHOTS_DIR=$(CURDIR)/docs $(PY) -m pytest tests/browser -q

lint: venv ## ruff (format check, imports, pyflakes and friends) and mypy, as configured in pyproject.toml
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

format: venv ## rewrite the code as ruff formats it, and apply ruff's safe fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint install image ## lint first, then every tier: unit, repo, http, model (real bundle), integration (real Kafka + MinIO), browser, image
	@# the durations of the last run order the next one, longest first (kept under CACHE_DIR)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup -o cache_dir=$(CACHE_DIR)/pytest $(PYTEST_ARGS)

test-unit: venv ## pure logic only: offline, no external tool, seconds
	$(PY) -m pytest tests/unit

test-repo: venv ## repository checks: locks, hadolint, manifest and Compose schemas (needs Go)
	$(PY) -m pytest tests/repo

audit: venv ## known vulnerabilities in every locked package (pip-audit; needs PyPI's and OSV's vulnerability data)
	@# --strict: a package that could not be audited fails the audit instead of passing unchecked
	$(VENV)/bin/pip-audit --strict --no-deps --disable-pip --progress-spinner off \
	  --cache-dir $(CACHE_DIR)/pip-audit -r $(RUNTIME_LOCK) -r $(TEST_LOCK)

test-image: image stack ## the built image's modes, started as an arbitrary UID against a local stack
	$(PY) -m pytest tests/image

bench: install ## engine and pipeline benchmarks on this machine (figures printed; see bench/README.md)
	$(PY) bench/engine_rtf.py
	$(PY) bench/allocator_policy.py
	$(PY) bench/pipeline_throughput.py
	$(PY) bench/results_page.py

clean-venv: ## remove the cached venv (the next run reinstalls from uv's cache)
	rm -rf $(VENV)

# --- The cluster: OpenShift with OpenShift Serverless (Knative Serving, Eventing, Knative
# Kafka), the Custom Metrics Autoscaler (KEDA) and the NVIDIA GPU Operator. Works with oc
# or kubectl, podman or docker. See "Deploying" in the README.

NAMESPACE ?= diarization
REGISTRY ?= image-registry.openshift-image-registry.svc:5000/$(NAMESPACE)
IMAGE_TAG ?= 0.1.0
IMAGE := $(REGISTRY)/diarization-service:$(IMAGE_TAG)
KUBECTL ?= $(shell command -v oc || command -v kubectl || echo oc)
KUSTOMIZE_IMAGE := image-registry.openshift-image-registry.svc:5000/diarization/diarization-service:0.1.0
# An optional profile, a component of knative/profiles/ ("GPUs" in the README): make deploy
# PROFILE=idle-zero applies knative/ with it, through a kustomization made in $(CACHE_DIR).
PROFILE ?=
MANIFESTS := $(if $(PROFILE),$(CACHE_DIR)/deploy/$(PROFILE),knative)

.PHONY: build push manifests create-secret deploy undeploy status logs test-health test-diarize

build: system-deps venv models ## build $(IMAGE) with buildah on the pinned UBI base (never on a stand-in; bakes the offline model)
	$(PY) local-dev/image.py build --tag $(IMAGE) --require-base

push: ## push $(IMAGE) with buildah (`buildah login` to the registry first)
	$(PY) local-dev/image.py push $(IMAGE)

manifests: ## the kustomization deploy applies: knative/, with knative/profiles/$(PROFILE) when PROFILE is set
ifneq ($(PROFILE),)
	@test -f knative/profiles/$(PROFILE)/kustomization.yaml || { echo "no profile knative/profiles/$(PROFILE)"; exit 1; }
	@# kustomize takes neither absolute roots nor an overlay inside knative/: relative paths from outside
	mkdir -p $(MANIFESTS) && printf 'resources:\n  - %s\ncomponents:\n  - %s\n' \
	  "$$(realpath --relative-to=$(MANIFESTS) knative)" "$$(realpath --relative-to=$(MANIFESTS) knative/profiles/$(PROFILE))" \
	  > $(MANIFESTS)/kustomization.yaml
endif

create-secret: ## Secrets: S3_ACCESS_KEY and S3_SECRET_KEY, API_KEY (generated when not given), optional HF_TOKEN
	@test -n "$${S3_ACCESS_KEY:-}" && test -n "$${S3_SECRET_KEY:-}" || { echo "set S3_ACCESS_KEY and S3_SECRET_KEY"; exit 1; }
	$(KUBECTL) get namespace $(NAMESPACE) >/dev/null 2>&1 || $(KUBECTL) create namespace $(NAMESPACE)
	@$(KUBECTL) -n $(NAMESPACE) create secret generic diarization-s3 --from-literal=S3_ACCESS_KEY="$$S3_ACCESS_KEY" \
	  --from-literal=S3_SECRET_KEY="$$S3_SECRET_KEY" --dry-run=client -o yaml | $(KUBECTL) apply -f -
	@if [ -n "$${HF_TOKEN:-}" ]; then $(KUBECTL) -n $(NAMESPACE) create secret generic diarization-hf-token \
	  --from-literal=HF_TOKEN="$$HF_TOKEN" --dry-run=client -o yaml | $(KUBECTL) apply -f -; fi
	@# The public API needs a key (the shim refuses to start without one): the one given, the one
	@# already there, or a new random one. It is never printed; the command to read it is.
	@key="$${API_KEY:-}"; \
	if [ -z "$$key" ] && $(KUBECTL) -n $(NAMESPACE) get secret diarization-api-key >/dev/null 2>&1; then \
	  echo "kept the existing API key (set API_KEY to replace it)"; \
	else \
	  if [ -z "$$key" ]; then key=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(32))'); echo "generated an API key"; fi; \
	  $(KUBECTL) -n $(NAMESPACE) create secret generic diarization-api-key --from-literal=API_KEY="$$key" \
	    --dry-run=client -o yaml | $(KUBECTL) apply -f - >/dev/null; \
	fi; \
	echo "read it with: $(KUBECTL) -n $(NAMESPACE) get secret diarization-api-key -o jsonpath='{.data.API_KEY}' | base64 -d"

deploy: manifests ## apply knative/ (and PROFILE) into $(NAMESPACE) with $(IMAGE), then the HTTPS Route for the public Service's host
	$(KUBECTL) get namespace $(NAMESPACE) >/dev/null 2>&1 || $(KUBECTL) create namespace $(NAMESPACE)
	# OpenShift Serverless runs the SinkBinding webhook in inclusion mode: only labelled namespaces get K_SINK
	$(KUBECTL) label --overwrite namespace $(NAMESPACE) bindings.knative.dev/include=true
	$(KUBECTL) kustomize $(MANIFESTS) | sed -e 's|$(KUSTOMIZE_IMAGE)|$(IMAGE)|' -e 's|namespace: diarization$$|namespace: $(NAMESPACE)|' \
	  -e 's|/diarization/diarization-events|/$(NAMESPACE)/diarization-events|' \
	  -e 's|system:serviceaccount:diarization:|system:serviceaccount:$(NAMESPACE):|' | $(KUBECTL) apply -n $(NAMESPACE) -f -
	$(KUBECTL) -n $(NAMESPACE) wait ksvc/diarization ksvc/diarization-events --for=condition=Ready --timeout=15m
	host=$$($(KUBECTL) -n $(NAMESPACE) get ksvc diarization -o jsonpath='{.status.url}' | sed 's|^[a-z]*://||'); \
	$(KUBECTL) kustomize knative/openshift/ | sed "s|host: .*|host: $$host|; s|name: diarization-diarization|name: diarization-$(NAMESPACE)|" \
	  | $(KUBECTL) apply -f -; echo "https://$$host"

undeploy: manifests ## delete what deploy created (Secrets and the model PVC are kept)
	$(KUBECTL) delete route -n knative-serving-ingress diarization-$(NAMESPACE) --ignore-not-found
	$(KUBECTL) kustomize $(MANIFESTS) | sed 's|namespace: diarization$$|namespace: $(NAMESPACE)|' \
	  | $(KUBECTL) delete -n $(NAMESPACE) --ignore-not-found -f - --selector '!diarization.dev/keep'

status: ## the Services, the consumer, their scalers, event plumbing and pods
	$(KUBECTL) -n $(NAMESPACE) get ksvc,deployment,scaledobject,broker,trigger,kafkasource,kafkasink,sinkbinding,pvc,pods -o wide 2>/dev/null || true
	$(KUBECTL) -n $(NAMESPACE) get ksvc diarization -o jsonpath='{.status.url}{"\n"}' 2>/dev/null || true

logs: ## recent logs of the shim and consumer pods
	$(KUBECTL) -n $(NAMESPACE) logs -l app.kubernetes.io/name=diarization --all-containers --prefix --tail=200

test-health: ## GET /health through the Route
	host=$$($(KUBECTL) -n $(NAMESPACE) get ksvc diarization -o jsonpath='{.status.url}' | sed 's|^[a-z]*://||'); \
	curl -fsk "https://$$host/health"; echo

test-diarize: venv ## POST pyannote's sample to /v1/diarize through the Route
	host=$$($(KUBECTL) -n $(NAMESPACE) get ksvc diarization -o jsonpath='{.status.url}' | sed 's|^[a-z]*://||'); \
	sample=$$($(PY) -c 'import pathlib, pyannote.audio as p; print(pathlib.Path(p.__file__).parent / "sample" / "sample.wav")'); \
	curl -fsk "https://$$host/v1/diarize" -F "file=@$$sample" $${API_KEY:+-H "Authorization: Bearer $$API_KEY"}; echo
