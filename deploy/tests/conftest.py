"""The Kubernetes manifests of deploy/k8s, loaded once for the tests beside this file: every document
of every file the kustomization lists (the tests check that it lists every file there is)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"


@dataclass(frozen=True)
class Manifest:
    path: str  # relative to deploy/k8s
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.doc["kind"])

    @property
    def name(self) -> str:
        return str(self.doc["metadata"]["name"])

    @property
    def id(self) -> str:
        return f"{self.path}:{self.kind}/{self.name}"


def load_manifests() -> list[Manifest]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    manifests = []
    for resource in kustomization["resources"]:
        text = (K8S / resource).read_text()
        manifests += [Manifest(resource, doc) for doc in yaml.safe_load_all(text) if doc]
    return manifests


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # One test per document, named after it, so a failure says which object is wrong.
    if "manifest" in metafunc.fixturenames:
        manifests = load_manifests()
        metafunc.parametrize("manifest", manifests, ids=[m.id for m in manifests])


@pytest.fixture(scope="session")
def manifests() -> list[Manifest]:
    return load_manifests()
