"""deploy/k8s hangs together, which no schema can tell: Services select pods and ports that exist,
every ConfigMap, Secret and volume named is there, each container's environment loads into its
service's settings object (a misspelt SUANLI_* variable, or one the service does not read, fails),
the addresses in it name Services and ports that exist, the ports agree with the settings, the
metrics ports with the Prometheus contract, images with the Dockerfiles, and the GPU pools, the
shared volume and the NATS cluster are wired the way the services need."""

from __future__ import annotations

import importlib
import os
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from deploy.tests.conftest import Manifest

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")
SHARED_CLAIM = "suanli-shared"
GPU = "nvidia.com/gpu"
POOL_LABEL = "suanli.dev/gpu-pool"
# Secrets the operator makes, never committed (README, "Scale out", says how).
OPERATOR_SECRETS = {"suanli-auth-keys"}
# What downward-API fields stand for when a container's environment is loaded here.
FIELD_SAMPLES = {"spec.nodeName": "gpu-node-1", "status.podIP": "10.0.0.7", "metadata.name": "pod-0"}
# Variables a Suanli container may set besides its settings' own: HOME for the caches of the
# libraries inside (the images' user has no home at the uid the pods run as).
EXTRA_ENV = {"HOME"}


@dataclass(frozen=True)
class Component:
    settings: str  # module:Class
    source: str  # the package folder whose pyproject.toml versions its image
    metrics_port: int | None = None  # the Prometheus contract: /metrics on this port
    metrics_setting: str | None = None  # the settings field that holds it
    metrics_host: str | None = None  # the settings field of the interface /metrics binds


COMPONENTS = {
    # gRPC services serve /metrics on their gRPC API's interface.
    "auth": Component(
        "suanli_auth.settings:AuthSettings", "services/auth", 9461, "auth_metrics_port", "auth_grpc_host"
    ),
    "catalog": Component(
        "suanli_catalog.settings:CatalogSettings",
        "services/catalog",
        9462,
        "catalog_metrics_port",
        "catalog_grpc_host",
    ),
    "scheduler": Component(
        "suanli_scheduler.settings:SchedulerSettings",
        "services/scheduler",
        9463,
        "scheduler_metrics_port",
        "scheduler_grpc_host",
    ),
    "rag": Component(
        "suanli_rag.settings:RagSettings", "services/rag", 9464, "rag_metrics_port", "rag_grpc_host"
    ),
    "trainer-agent": Component(
        "suanli_trainer_agent.settings:AgentSettings",
        "services/trainer-agent",
        9465,
        "agent_metrics_port",
        "agent_metrics_host",
    ),
    "inference-gateway": Component(
        "suanli_inference_gateway.settings:GatewaySettings",
        "services/inference-gateway",
        8080,
        "http_port",
        "http_host",
    ),
    "serving-controller": Component(
        "suanli_inference_gateway.serving.settings:ServingSettings", "services/inference-gateway"
    ),
}
GRPC_PORT_SETTINGS = {
    "auth": "auth_grpc_port",
    "catalog": "catalog_grpc_port",
    "scheduler": "scheduler_grpc_port",
    "rag": "rag_grpc_port",
}
# Image name -> (Dockerfile, package folder whose version tags it).
IMAGES = {
    **{
        name: (f"{c.source}/Dockerfile", c.source)
        for name, c in COMPONENTS.items()
        if name != "serving-controller"
    },
    "ray-serving": ("deploy/ray/Dockerfile", "services/inference-gateway"),
}


@dataclass(frozen=True)
class Pod:
    owner: str  # Kind/name of what makes the pods
    template: dict[str, Any]

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.template.get("metadata", {}).get("labels", {}))

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.template["spec"])

    @property
    def containers(self) -> list[dict[str, Any]]:
        return list(self.spec["containers"])

    def container(self, name: str) -> dict[str, Any]:
        (found,) = [c for c in self.containers if c["name"] == name]
        return found

    def port_names_and_numbers(self) -> set[str | int]:
        ports: set[str | int] = set()
        for container in self.containers:
            for port in container.get("ports", []):
                ports |= {port["containerPort"], port.get("name", "")}
        return ports

    def mount_of_claim(self, container: dict[str, Any], claim: str) -> str | None:
        names = {
            v["name"]
            for v in self.spec.get("volumes", [])
            if v.get("persistentVolumeClaim", {}).get("claimName") == claim
        }
        mounts = [m["mountPath"] for m in container.get("volumeMounts", []) if m["name"] in names]
        return mounts[0] if mounts else None


class Cluster:
    """The manifests, indexed the way the checks look things up."""

    def __init__(self, manifests: list[Manifest]) -> None:
        self.manifests = manifests
        self.by_kind: dict[str, dict[str, dict[str, Any]]] = {}
        for m in manifests:
            self.by_kind.setdefault(m.kind, {})[m.name] = m.doc

    def kind(self, kind: str) -> dict[str, dict[str, Any]]:
        return self.by_kind.get(kind, {})

    def pods(self) -> Iterator[Pod]:
        for kind in WORKLOADS:
            for name, doc in self.kind(kind).items():
                yield Pod(f"{kind}/{name}", doc["spec"]["template"])
        for name, doc in self.kind("RayService").items():
            cluster = doc["spec"]["rayClusterConfig"]
            yield Pod(f"RayService/{name}/head", cluster["headGroupSpec"]["template"])
            for group in cluster.get("workerGroupSpecs", []):
                yield Pod(f"RayService/{name}/{group['groupName']}", group["template"])

    def pod(self, owner: str) -> Pod:
        (found,) = [p for p in self.pods() if p.owner == owner]
        return found

    def suanli_containers(self) -> Iterator[tuple[Pod, dict[str, Any], Component]]:
        for pod in self.pods():
            for container in pod.containers:
                if container["name"] in COMPONENTS:
                    yield pod, container, COMPONENTS[container["name"]]

    def config_value(self, kind: str, name: str, key: str) -> str:
        doc = self.kind(kind)[name]
        data = doc.get("stringData", {}) if kind == "Secret" else doc.get("data", {})
        return str(data[key])

    def environment(self, container: dict[str, Any]) -> dict[str, str]:
        """What the container's process sees, from envFrom and env (later entries win, as in Kubernetes)."""
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            (kind, ref), *_ = ((k, v) for k, v in source.items() if k.endswith("Ref"))
            doc = self.kind("ConfigMap" if kind == "configMapRef" else "Secret")[ref["name"]]
            env.update({k: str(v) for k, v in doc.get("data", doc.get("stringData", {})).items()})
        for entry in container.get("env", []):
            source = entry.get("valueFrom")
            if source is None:
                env[entry["name"]] = str(entry.get("value", ""))
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                env[entry["name"]] = self.config_value("ConfigMap", ref["name"], ref["key"])
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                env[entry["name"]] = self.config_value("Secret", ref["name"], ref["key"])
            else:
                env[entry["name"]] = FIELD_SAMPLES[source["fieldRef"]["fieldPath"]]
        return env

    def endpoint_exists(self, host: str, port: int) -> bool:
        """Whether host:port reaches something: a Service of ours, a StatefulSet pod through its
        headless Service, or a Service KubeRay makes for a RayService."""
        services = self.kind("Service")
        if host in services:
            return port in {p["port"] for p in services[host]["spec"]["ports"]}
        for name, doc in self.kind("RayService").items():
            if host == f"{name}-head-svc":
                head = Pod("head", doc["spec"]["rayClusterConfig"]["headGroupSpec"]["template"])
                return port in head.port_names_and_numbers()
            if host == f"{name}-serve-svc":
                return port == yaml.safe_load(doc["spec"]["serveConfigV2"])["http_options"]["port"]
        pod, _, service = host.partition(".")
        if service in services and services[service]["spec"].get("clusterIP") == "None":
            for name, sts in self.kind("StatefulSet").items():
                if sts["spec"]["serviceName"] == service and pod in {
                    f"{name}-{i}" for i in range(sts["spec"]["replicas"])
                }:
                    return port in {p["port"] for p in services[service]["spec"]["ports"]}
        return False


@pytest.fixture(scope="module")
def cluster(manifests: list[Manifest]) -> Cluster:
    return Cluster(manifests)


def settings_class(component: Component) -> type[BaseSettings]:
    module, _, name = component.settings.partition(":")
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, BaseSettings)
    return cls


def variables_read_by(cls: type[BaseSettings]) -> set[str]:
    prefix = str(cls.model_config.get("env_prefix", ""))
    names = set()
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {str(choice).upper() for choice in alias.choices}
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"{prefix}{field_name}".upper())
    return names


def load_settings(cls: type[BaseSettings], env: dict[str, str]) -> Any:
    # Only the container's environment: nothing of this machine's (the Makefile exports SUANLI_HOME).
    with mock.patch.dict(os.environ, env, clear=True):
        return cls()


# --- Services, references, images -------------------------------------------------------------


def test_services_select_pods_and_ports_that_exist(cluster: Cluster) -> None:
    pods = list(cluster.pods())
    for name, service in cluster.kind("Service").items():
        selector = service["spec"]["selector"]
        selected = [p for p in pods if selector.items() <= p.labels.items()]
        assert selected, f"Service/{name} selects no pod ({selector})"
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert all(target in p.port_names_and_numbers() for p in selected), (
                f"Service/{name}: no container port {target!r} in {[p.owner for p in selected]}"
            )
    for kind in WORKLOADS:
        for name, doc in cluster.kind(kind).items():
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items(), f"{kind}/{name}"
    for name, sts in cluster.kind("StatefulSet").items():
        governing = cluster.kind("Service").get(sts["spec"]["serviceName"])
        assert governing is not None, f"StatefulSet/{name}: no Service {sts['spec']['serviceName']}"
        assert governing["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    for name, budget in cluster.kind("PodDisruptionBudget").items():
        match = budget["spec"]["selector"]["matchLabels"]
        assert any(match.items() <= p.labels.items() for p in pods), f"PodDisruptionBudget/{name}"


def test_the_ingress_reaches_the_gateway_and_lets_uploads_through(cluster: Cluster) -> None:
    (ingress,) = cluster.kind("Ingress").values()
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            service = cluster.kind("Service")[backend["name"]]
            assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    body = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert body.endswith("m")
    largest_upload = settings_class(COMPONENTS["catalog"]).model_fields["max_upload_bytes"].default
    assert int(body[:-1]) * 2**20 >= largest_upload, "the ingress would refuse uploads the catalog takes"


def test_every_configmap_secret_and_claim_named_exists(cluster: Cluster) -> None:
    missing = []
    claims = set(cluster.kind("PersistentVolumeClaim"))
    for pod in cluster.pods():
        for volume in pod.spec.get("volumes", []):
            if "configMap" in volume and volume["configMap"]["name"] not in cluster.kind("ConfigMap"):
                missing.append((pod.owner, volume["configMap"]["name"]))
            secret = volume.get("secret", {}).get("secretName")
            if secret and secret not in cluster.kind("Secret") and secret not in OPERATOR_SECRETS:
                missing.append((pod.owner, secret))
            claim = volume.get("persistentVolumeClaim", {}).get("claimName")
            if claim and claim not in claims:
                missing.append((pod.owner, claim))
        templates = {t["metadata"]["name"] for t in _claim_templates(cluster, pod.owner)}
        volumes = {v["name"] for v in pod.spec.get("volumes", [])} | templates
        for container in pod.containers:
            for mount in container.get("volumeMounts", []):
                if mount["name"] not in volumes:
                    missing.append((pod.owner, f"volume {mount['name']}"))
            for source in container.get("envFrom", []):
                for kind, ref in source.items():
                    store = cluster.kind("ConfigMap" if kind == "configMapRef" else "Secret")
                    if ref["name"] not in store:
                        missing.append((pod.owner, ref["name"]))
            for entry in container.get("env", []):
                for kind, ref in entry.get("valueFrom", {}).items():
                    if kind in ("configMapKeyRef", "secretKeyRef"):
                        store = cluster.kind("ConfigMap" if kind == "configMapKeyRef" else "Secret")
                        doc = store.get(ref["name"], {})
                        if ref["key"] not in doc.get("data", {}) | doc.get("stringData", {}):
                            missing.append((pod.owner, f"{ref['name']}/{ref['key']}"))
    assert missing == []


def _claim_templates(cluster: Cluster, owner: str) -> list[dict[str, Any]]:
    kind, _, name = owner.partition("/")
    if kind != "StatefulSet":
        return []
    return list(cluster.kind("StatefulSet")[name]["spec"].get("volumeClaimTemplates", []))


def test_the_auth_keys_secret_is_made_as_the_readme_says(cluster: Cluster) -> None:
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"kubectl -n suanli create secret generic suanli-auth-keys[^\n]*", readme)
    assert command is not None, "README must tell how to make suanli-auth-keys"
    pod = cluster.pod("Deployment/auth")
    settings = load_settings(settings_class(COMPONENTS["auth"]), cluster.environment(pod.container("auth")))
    for path in (settings.resolved_signing_key_path, settings.resolved_email_code_secret_path):
        assert f"--from-file={path.name}=" in command.group(0), f"the Secret must hold {path.name}"


def test_images_are_built_here_and_tagged_with_the_package_version(cluster: Cluster) -> None:
    kustomization = yaml.safe_load((ROOT / "deploy/k8s/kustomization.yaml").read_text())
    retaggable = {image["name"] for image in kustomization["images"]}
    used = set()
    for pod in cluster.pods():
        for container in pod.containers:
            image = container["image"]
            if not image.startswith("suanli/"):
                repository, _, tag = image.rpartition(":")
                assert repository and tag and tag != "latest", f"{pod.owner}: pin {image}"
                continue
            match = re.fullmatch(r"suanli/([a-z-]+):(\S+)", image)
            assert match is not None and match.group(1) in IMAGES, f"{pod.owner}: unknown image {image}"
            dockerfile, source = IMAGES[match.group(1)]
            assert (ROOT / dockerfile).is_file()
            version = tomllib.loads((ROOT / source / "pyproject.toml").read_text())["project"]["version"]
            assert match.group(2) == version, f"{pod.owner}: {image}, but {source} is {version}"
            used.add(f"suanli/{match.group(1)}")
    assert used == retaggable, "kustomization.yaml's images must list every Suanli image, and only those"


# --- Each container's environment against its settings ------------------------------------------


def test_suanli_containers_set_only_variables_their_settings_read(cluster: Cluster) -> None:
    unread = []
    for pod, container, component in cluster.suanli_containers():
        known = variables_read_by(settings_class(component)) | EXTRA_ENV
        for variable in cluster.environment(container):
            if variable not in known and not variable.startswith("OTEL_"):
                unread.append(f"{pod.owner}: {variable}")
    assert unread == []
    for pod in cluster.pods():
        for container in pod.containers:
            if container["name"] not in COMPONENTS:
                assert not [v for v in cluster.environment(container) if v.startswith("SUANLI_")]


def test_each_environment_loads_and_its_addresses_resolve(cluster: Cluster) -> None:
    for pod, container, component in cluster.suanli_containers():
        settings = load_settings(settings_class(component), cluster.environment(container))
        where = f"{pod.owner}/{container['name']}"
        for name in ("auth", "catalog", "scheduler", "rag"):
            host, _, port = getattr(settings, f"{name}_address").rpartition(":")
            assert cluster.endpoint_exists(host, int(port)), f"{where}: {name}_address"
        for url in settings.nats_url.split(","):
            parts = urlsplit(url)
            assert parts.hostname and cluster.endpoint_exists(parts.hostname, parts.port or 4222), where
        for field in ("qdrant_url", "s3_endpoint_url", "public_serve_url", "ray_address"):
            url = getattr(settings, field, None)
            if url:
                parts = urlsplit(url)
                assert parts.hostname and parts.port, f"{where}: {field} {url}"
                assert cluster.endpoint_exists(parts.hostname, parts.port), f"{where}: {field} {url}"


def test_the_database_url_is_the_postgres_the_manifests_run(cluster: Cluster) -> None:
    postgres = cluster.pod("StatefulSet/postgres")
    server_env = cluster.environment(postgres.container("postgres"))
    urls = set()
    for _pod, container, component in cluster.suanli_containers():
        env = cluster.environment(container)
        if "SUANLI_DATABASE_URL" in env:
            urls.add(load_settings(settings_class(component), env).database_url)
    (url,) = (make_url(u) for u in urls)
    assert url.drivername == "postgresql+asyncpg"
    assert url.host and cluster.endpoint_exists(url.host, url.port or 5432)
    assert (url.username, url.password, url.database) == (
        server_env["POSTGRES_USER"],
        server_env["POSTGRES_PASSWORD"],
        server_env["POSTGRES_DB"],
    )


def test_grpc_services_listen_where_their_service_probes_and_addresses_say(cluster: Cluster) -> None:
    for name, port_setting in GRPC_PORT_SETTINGS.items():
        pod = cluster.pod(f"Deployment/{name}")
        container = pod.container(name)
        settings = load_settings(settings_class(COMPONENTS[name]), cluster.environment(container))
        port = getattr(settings, port_setting)
        assert getattr(settings, f"{name}_grpc_host") == "0.0.0.0", f"{name} must listen beyond the pod"
        assert {"name": "grpc", "containerPort": port} in container["ports"]
        assert container["readinessProbe"]["grpc"]["port"] == port
        assert container["livenessProbe"]["grpc"]["port"] == port
        (service_port,) = cluster.kind("Service")[name]["spec"]["ports"]
        assert service_port["port"] == port
        assert getattr(settings, f"{name}_address") == f"{name}:{port}"
    gateway = cluster.pod("Deployment/inference-gateway").container("inference-gateway")
    settings = load_settings(settings_class(COMPONENTS["inference-gateway"]), cluster.environment(gateway))
    assert settings.http_host == "0.0.0.0"
    assert {"name": "http", "containerPort": settings.http_port} in gateway["ports"]
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"


# --- Prometheus ----------------------------------------------------------------------------------


def test_every_service_is_scraped_on_its_contract_port(cluster: Cluster) -> None:
    scraped = set()
    for pod, container, component in cluster.suanli_containers():
        if component.metrics_port is None:
            continue
        annotations = pod.template["metadata"].get("annotations", {})
        assert annotations.get("prometheus.io/scrape") == "true", pod.owner
        assert annotations.get("prometheus.io/path") == "/metrics", pod.owner
        assert annotations.get("prometheus.io/port") == str(component.metrics_port), pod.owner
        assert component.metrics_port in {p["containerPort"] for p in container["ports"]}, pod.owner
        settings = load_settings(settings_class(component), cluster.environment(container))
        assert getattr(settings, str(component.metrics_setting)) == component.metrics_port, pod.owner
        # Prometheus scrapes from another pod: /metrics on the loopback interface is out of its reach.
        assert getattr(settings, str(component.metrics_host)) == "0.0.0.0", pod.owner
        scraped.add(container["name"])
    assert scraped == {name for name, c in COMPONENTS.items() if c.metrics_port is not None}


@pytest.mark.parametrize("name", [n for n, c in COMPONENTS.items() if c.metrics_setting])
def test_the_contract_port_is_the_settings_default(name: str) -> None:
    component = COMPONENTS[name]
    assert component.metrics_setting is not None
    field = settings_class(component).model_fields.get(component.metrics_setting)
    assert field is not None, f"{component.settings} has no {component.metrics_setting}"
    assert field.default == component.metrics_port


# --- GPUs, shared storage, NATS ------------------------------------------------------------------


def test_training_and_inference_gpus_are_separate_pools(cluster: Cluster) -> None:
    agent = cluster.pod("DaemonSet/trainer-agent")
    inference = [
        p for p in cluster.pods() if p.owner.startswith("RayService/") and not p.owner.endswith("/head")
    ]
    head = [p for p in cluster.pods() if p.owner.startswith("RayService/") and p.owner.endswith("/head")]
    assert inference and head
    pools = set()
    for pod in [agent, *inference]:
        assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in pod.spec["tolerations"], (
            pod.owner
        )
        assert int(pod.containers[0]["resources"]["limits"][GPU]) >= 1, pod.owner
        pools.add((pod.owner == agent.owner, pod.spec["nodeSelector"][POOL_LABEL]))
    # A GPU that the device plugin gave one side is never the other's.
    assert len({pool for _, pool in pools}) == 2, pools
    for pod in head:
        assert GPU not in pod.containers[0].get("resources", {}).get("limits", {})


def test_jobs_models_and_replicas_see_one_shared_volume_at_one_path(cluster: Cluster) -> None:
    def mounted(owner: str, container: str) -> tuple[Pod, dict[str, Any], str]:
        pod = cluster.pod(owner)
        spec = pod.container(container)
        path = pod.mount_of_claim(spec, SHARED_CLAIM)
        assert path is not None, f"{owner} does not mount {SHARED_CLAIM}"
        return pod, spec, path

    def setting(pod: Pod, container: dict[str, Any], field: str) -> Path:
        component = COMPONENTS[container["name"]]
        return Path(getattr(load_settings(settings_class(component), cluster.environment(container)), field))

    _, scheduler, scheduler_mount = mounted("Deployment/scheduler", "scheduler")
    agent_pod, agent, agent_mount = mounted("DaemonSet/trainer-agent", "trainer-agent")
    catalog_pod, catalog, catalog_mount = mounted("Deployment/catalog", "catalog")
    scheduler_pod = cluster.pod("Deployment/scheduler")
    volumes = setting(scheduler_pod, scheduler, "resolved_volumes_dir")
    # The scheduler hands agents volume paths, and the catalog reads the outputs at those paths.
    assert volumes == setting(agent_pod, agent, "resolved_volumes_dir")
    assert volumes.is_relative_to(scheduler_mount) and scheduler_mount == agent_mount == catalog_mount
    models = setting(catalog_pod, catalog, "resolved_models_dir")
    assert models.is_relative_to(catalog_mount)
    for pod in cluster.pods():
        if pod.owner.startswith("RayService/"):
            # vLLM replicas load a model by the path the catalog registered.
            assert pod.mount_of_claim(pod.containers[0], SHARED_CLAIM) == catalog_mount, pod.owner


def test_the_nats_cluster_runs_the_repository_config_with_a_route_per_pod(cluster: Cluster) -> None:
    conf = (ROOT / "deploy/nats/nats-cluster.conf").read_text()
    assert cluster.kind("ConfigMap")["nats-config"]["data"]["nats.conf"] == conf
    sts = cluster.kind("StatefulSet")["nats"]
    service = sts["spec"]["serviceName"]
    routes = re.findall(r"nats-route://([\w.-]+):(\d+)", conf)
    assert routes == [(f"nats-{i}.{service}", "6222") for i in range(sts["spec"]["replicas"])]
    assert sts["spec"]["replicas"] >= 3, "JetStream R3 needs three servers"
    headless = cluster.kind("Service")[service]["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    env = {e["name"] for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "NATS_SERVER_NAME" in env and "$NATS_SERVER_NAME" in conf
