"""Every document of deploy/k8s is a valid Kubernetes object: built-in kinds against Kubernetes'
OpenAPI schemas (kubernetes-validate bundles them: no cluster, no network), strictly, so a
misspelt field fails instead of being dropped; the RayService against the KubeRay subset vendored
in schemas/, its pod templates as Kubernetes PodTemplateSpecs, and its Serve config with Ray's own
schema."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

if TYPE_CHECKING:
    from deploy.tests.conftest import Manifest

ROOT = Path(__file__).resolve().parents[2]
# The oldest Kubernetes the manifests are meant for: grpc probes are GA from 1.27.
KUBERNETES_VERSION = "1.29"
RAYSERVICE_SCHEMA = json.loads((Path(__file__).parent / "schemas" / "rayservice-v1-subset.json").read_text())


def test_the_kustomization_lists_every_manifest_file() -> None:
    k8s = ROOT / "deploy" / "k8s"
    kustomization = yaml.safe_load((k8s / "kustomization.yaml").read_text())
    on_disk = sorted(str(p.relative_to(k8s)) for p in (k8s / "manifests").glob("*.yaml"))
    assert sorted(kustomization["resources"]) == on_disk
    # `kubectl apply -f deploy/k8s/manifests/` goes by file name: the Namespace must come first.
    first = yaml.safe_load((k8s / on_disk[0]).read_text())
    assert first["kind"] == "Namespace"
    assert kustomization["namespace"] == first["metadata"]["name"]


def test_the_document_is_valid(manifest: Manifest) -> None:
    assert manifest.doc["metadata"].get("namespace", "suanli") == "suanli", "every object in one namespace"
    if manifest.doc["apiVersion"].startswith("ray.io/"):
        _validate_rayservice(manifest.doc)
        return
    try:
        kubernetes_validate.validate(manifest.doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(part) for part in error.path)
        pytest.fail(f"{manifest.id}: {where}: {error.message}")
    except kubernetes_validate.SchemaNotFoundError as error:
        pytest.fail(f"{manifest.id}: {error.message}")


def _validate_rayservice(doc: dict[str, Any]) -> None:
    assert doc["kind"] == "RayService"
    jsonschema.Draft202012Validator(RAYSERVICE_SCHEMA).validate(doc)
    cluster = doc["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster.get("workerGroupSpecs", [])]
    for group in groups:
        # What KubeRay turns into pods is a PodTemplateSpec: check it as Kubernetes would.
        template = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": "ray-group"},
            "template": copy.deepcopy(group["template"]),
        }
        kubernetes_validate.validate(template, KUBERNETES_VERSION, strict=True)
        for value in group["rayStartParams"].values():
            assert isinstance(value, str), "rayStartParams values are strings in ray.io/v1"
    for worker in cluster.get("workerGroupSpecs", []):
        assert worker["minReplicas"] <= worker["replicas"] <= worker["maxReplicas"]


def test_the_serve_config_is_one_ray_accepts(manifests: list[Manifest]) -> None:
    schema = pytest.importorskip("ray.serve.schema")
    (service,) = [m.doc for m in manifests if m.kind == "RayService"]
    config = schema.ServeDeploySchema.model_validate(yaml.safe_load(service["spec"]["serveConfigV2"]))
    # Applications are the serving controller's to make at run time; any listed here would be
    # redeployed by KubeRay over the controller's changes.
    assert config.applications == []
    assert config.http_options.host == "0.0.0.0"


def test_the_ray_cluster_and_its_driver_run_the_ray_the_gateway_pins(manifests: list[Manifest]) -> None:
    gateway = tomllib.loads((ROOT / "services/inference-gateway/pyproject.toml").read_text())
    pins = [p for p in gateway["project"]["optional-dependencies"]["serving"] if p.startswith("ray[")]
    (pinned,) = [p.split("==", 1)[1] for p in pins]
    (service,) = [m.doc for m in manifests if m.kind == "RayService"]
    assert service["spec"]["rayClusterConfig"]["rayVersion"] == pinned
    dockerfile = (ROOT / "deploy/ray/Dockerfile").read_text()
    base = re.search(r"^FROM rayproject/ray:(\S+)", dockerfile, re.MULTILINE)
    assert base is not None and base.group(1).startswith(f"{pinned}-")
    assert f'"ray[serve,llm]=={pinned}"' in dockerfile
