#!/usr/bin/env python3
"""Schemas to validate knative/ offline: CRDs from their projects' Go modules, fetched once.

Core kinds (Deployment, ConfigMap, ...) are checked against the JSON schemas shipped in the
``kubernetes-validate`` wheel, for ``KUBERNETES_VERSION``. The custom resources are checked
against the ``openAPIV3Schema`` of the CRDs that Knative, KEDA and OpenShift publish in
their own Go modules: ``go mod download`` fetches the pinned versions once into
``$CACHE_DIR/go/pkg/mod`` (the same module cache ``stack.py`` uses), later runs read it.
kustomize itself, to render knative/ with its profiles as ``kubectl kustomize`` would, is
built once from its pinned module with ``go install`` into ``$CACHE_DIR/bin``.

    python local-dev/k8s_schemas.py fetch       # download the modules, print each CRD file
    python local-dev/k8s_schemas.py kustomize   # build kustomize once, print its path
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# local-dev/stack.py, for its cache folder and Go environment. A sibling module: running
# ``python local-dev/k8s_schemas.py`` puts local-dev/ on sys.path, and so does
# tests/support/local_dev.py, the one loader the tests use.
import stack
import yaml

# OpenShift 4.20 runs Kubernetes 1.33; kubernetes-validate picks the newest schema <= this.
KUBERNETES_VERSION = "1.33"

# Pinned modules: one Knative release (1.23 = v0.50), KEDA, and openshift/api (no tags).
MODULES = {
    "knative.dev/serving": "v0.50.0",
    "knative.dev/eventing": "v0.50.0",
    "knative.dev/eventing-kafka-broker": "v0.50.1",
    "github.com/kedacore/keda/v2": "v2.21.0",
    "github.com/openshift/api": "v0.0.0-20260813212709-d4bb0b443cb8",
}


# kustomize, to render knative/ as `kubectl kustomize` does, on machines without kubectl
KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5"
KUSTOMIZE_VERSION = "v5.7.1"


@dataclass(frozen=True, slots=True)
class CrdFile:
    """A CRD manifest inside a Go module."""

    module: str
    path: str


CRD_FILES = (
    CrdFile("knative.dev/serving", "config/core/300-resources/service.yaml"),
    CrdFile("knative.dev/eventing", "config/core/resources/broker.yaml"),
    CrdFile("knative.dev/eventing", "config/core/resources/trigger.yaml"),
    CrdFile("knative.dev/eventing", "config/core/resources/sinkbindings.yaml"),
    CrdFile(
        "knative.dev/eventing-kafka-broker",
        "control-plane/config/eventing-kafka-broker/100-source/100-kafka-source.yaml",
    ),
    CrdFile(
        "knative.dev/eventing-kafka-broker", "control-plane/config/eventing-kafka-broker/100-sink/100-kafka-sink.yaml"
    ),
    CrdFile("github.com/kedacore/keda/v2", "config/crd/bases/keda.sh_scaledobjects.yaml"),
    CrdFile("github.com/kedacore/keda/v2", "config/crd/bases/keda.sh_triggerauthentications.yaml"),
    CrdFile("github.com/openshift/api", "route/v1/zz_generated.crd-manifests/routes.crd.yaml"),
)


SchemaError = stack.StackError


def module_dirs(cache: Path) -> dict[str, Path]:
    """Each pinned module's folder in the module cache, downloading what is missing (one go call)."""
    go = stack.require_tool("go", stack.GO_HINT)
    cache.mkdir(parents=True, exist_ok=True)
    command = [go, "mod", "download", "-json", *(f"{m}@{v}" for m, v in MODULES.items())]
    result = subprocess.run(command, env=stack.go_env(cache), cwd=cache, capture_output=True, text=True, check=False)
    infos = _json_stream(result.stdout)
    errors = [f"{info['Path']}@{info['Version']}: {info['Error']}" for info in infos if "Error" in info]
    if result.returncode != 0 or errors or len(infos) != len(MODULES):
        raise SchemaError("go mod download failed: " + ("; ".join(errors) or result.stderr.strip()))
    return {info["Path"]: Path(info["Dir"]) for info in infos}


def _json_stream(text: str) -> list[dict[str, Any]]:
    """The JSON objects that ``go mod download -json`` prints one after another."""
    decoder, objects, position = json.JSONDecoder(), [], 0
    text = text.strip()
    while position < len(text):
        obj, position = decoder.raw_decode(text, position)
        objects.append(obj)
        position = len(text) - len(text[position:].lstrip())
    return objects


def crd_paths(cache: Path) -> list[Path]:
    """The CRD manifests, each checked to exist in its module."""
    dirs = module_dirs(cache)
    paths = [dirs[crd.module] / crd.path for crd in CRD_FILES]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise SchemaError(f"CRD files missing from the pinned modules: {', '.join(missing)}")
    return paths


def crd_schemas(cache: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """``(apiVersion, kind) -> openAPIV3Schema`` for every served version of every CRD."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in crd_paths(cache):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = doc["spec"]["group"], doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                if version.get("served"):
                    schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


def kustomize_binary(cache: Path) -> Path:
    """kustomize, built with ``go install`` into ``$CACHE_DIR/bin`` once per pinned version."""
    binary = cache / "bin" / "kustomize"
    stamp = binary.with_name("kustomize.version")
    if binary.is_file() and stamp.is_file() and stamp.read_text() == KUSTOMIZE_VERSION:
        return binary
    go = stack.require_tool("go", stack.GO_HINT)
    cache.mkdir(parents=True, exist_ok=True)
    command = [go, "install", f"{KUSTOMIZE_MODULE}@{KUSTOMIZE_VERSION}"]
    result = subprocess.run(command, env=stack.go_env(cache), cwd=cache, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SchemaError(f"go install of kustomize failed: {result.stderr.strip()}")
    stamp.write_text(KUSTOMIZE_VERSION)
    return binary


def main(argv: list[str] | None = None) -> int:
    """``fetch``: download the pinned modules once and print the CRD files' paths; ``kustomize``: build it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["fetch", "kustomize"])
    args = parser.parse_args(argv)
    try:
        if args.command == "kustomize":
            print(kustomize_binary(stack.cache_dir()))
            return 0
        for path in crd_paths(stack.cache_dir()):
            print(path)
    except SchemaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
