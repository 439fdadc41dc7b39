"""docker-compose.yml stays coherent: every build points at a Dockerfile that exists, every
service reaches NATS and PostgreSQL by their compose names, Prometheus scrapes every service where
its settings serve /metrics, and Grafana's data sources and dashboard ask for what exists: data
sources that are compose services, metrics and labels of the contract the services register (no
Docker engine runs here, so the files are checked, not started)."""

from __future__ import annotations

import importlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import promql_parser
import yaml

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
SUANLI_SERVICES = {"auth", "catalog", "scheduler", "trainer-agent", "rag", "inference-gateway"}
# Where each compose service's settings say /metrics is: (settings class, port field, host field).
METRICS_SETTINGS = {
    "auth": ("suanli_auth.settings:AuthSettings", "auth_metrics_port", "auth_grpc_host"),
    "catalog": ("suanli_catalog.settings:CatalogSettings", "catalog_metrics_port", "catalog_grpc_host"),
    "scheduler": (
        "suanli_scheduler.settings:SchedulerSettings",
        "scheduler_metrics_port",
        "scheduler_grpc_host",
    ),
    "rag": ("suanli_rag.settings:RagSettings", "rag_metrics_port", "rag_grpc_host"),
    "trainer-agent": (
        "suanli_trainer_agent.settings:AgentSettings",
        "agent_metrics_port",
        "agent_metrics_host",
    ),
    "inference-gateway": ("suanli_inference_gateway.settings:GatewaySettings", "http_port", "http_host"),
}
# The metrics contract: each name the services export, with its labels.
METRICS = {
    "suanli_http_requests_total": {"method", "route", "status"},
    "suanli_http_request_duration_seconds": {"method", "route"},
    "suanli_grpc_server_requests_total": {"method", "code"},
    "suanli_grpc_server_request_duration_seconds": {"method"},
    "suanli_tokens_total": {"model", "direction"},
    "suanli_gpu_slots": {"node", "gpu_type", "state"},
    "suanli_jobs": {"kind", "state"},
    "suanli_queue_depth": {"kind"},
    "suanli_scheduler_state_lock_held_seconds_total": set(),
    "suanli_scheduler_state_lock_wait_seconds_total": set(),
    "suanli_scheduler_state_lock_acquisitions_total": set(),
    "suanli_rag_ingestion_backlog": set(),
    "suanli_rag_documents_ingested_total": {"status"},
    "suanli_agent_slots": {"gpu_type", "state"},
    "suanli_agent_running_jobs": set(),
}
HISTOGRAMS = {"suanli_http_request_duration_seconds", "suanli_grpc_server_request_duration_seconds"}
TARGET_LABELS = {"job", "instance"}  # what Prometheus adds to every series it scrapes
# What the dashboard must show (the rest of the contract may be on it too).
DASHBOARD_MUST_SHOW = {
    "suanli_http_requests_total",
    "suanli_http_request_duration_seconds",
    "suanli_gpu_slots",
    "suanli_jobs",
    "suanli_queue_depth",
    "suanli_tokens_total",
    "suanli_rag_ingestion_backlog",
}


def test_compose_builds_existing_dockerfiles_and_wires_the_backends() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for backend in ("nats", "postgres", "qdrant", "minio", "jaeger"):
        assert backend in services
    built = {name: svc for name, svc in services.items() if "build" in svc}
    assert {"auth", "catalog", "scheduler", "trainer-agent", "rag", "inference-gateway"} <= set(built)
    for name, svc in built.items():
        dockerfile = ROOT / svc["build"]["context"] / svc["build"]["dockerfile"]
        assert dockerfile.is_file(), f"{name}: {dockerfile} is missing"
        env = svc["environment"]
        assert env["SUANLI_NATS_URL"] == "nats://nats:4222"
        assert env["SUANLI_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert services["inference-gateway"]["ports"] == ["8080:8080"]


def test_the_gateway_image_pins_the_chart_library_the_makefile_fetches() -> None:
    makefile = (ROOT / "Makefile").read_text()
    dockerfile = (ROOT / "services/inference-gateway/Dockerfile").read_text()
    pins = dict(
        line.split(" := ", 1)
        for line in makefile.splitlines()
        if line.startswith(("CHARTJS_VERSION", "CHARTJS_SHA256"))
    )
    assert f"chart.js-{pins['CHARTJS_VERSION'].strip()}.tgz" in dockerfile
    assert f"sha256:{pins['CHARTJS_SHA256'].strip()}" in dockerfile


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def _settings(service: str, compose: dict[str, Any]) -> Any:
    module, _, name = METRICS_SETTINGS[service][0].partition(":")
    env = {k: str(v) for k, v in compose["services"][service]["environment"].items()}
    # Only the container's environment: nothing of this machine's (the Makefile exports SUANLI_HOME).
    with mock.patch.dict(os.environ, env, clear=True):
        return getattr(importlib.import_module(module), name)()


def test_prometheus_scrapes_every_service_where_it_serves_metrics() -> None:
    compose = _compose()
    services = compose["services"]
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {}
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for static in job["static_configs"]:
            for target in static["targets"]:
                host, _, port = target.rpartition(":")
                targets[host] = int(port)
    assert set(targets) == SUANLI_SERVICES
    for service, port in targets.items():
        settings = _settings(service, compose)
        _, port_field, host_field = METRICS_SETTINGS[service]
        assert getattr(settings, port_field) == port, f"{service} serves /metrics on another port"
        assert getattr(settings, host_field) == "0.0.0.0", f"{service}: /metrics unreachable from Prometheus"
    mounted = services["prometheus"]["volumes"][0].split(":")[0]
    assert (ROOT / mounted).resolve() == ROOT / "deploy/prometheus/prometheus.yml"


def test_grafana_is_provisioned_from_files_that_exist_with_compose_data_sources() -> None:
    services = _compose()["services"]
    for volume in services["grafana"]["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (ROOT / source).exists(), f"grafana mounts {source}, which is missing"
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/datasources.yml").read_text())[
        "datasources"
    ]
    assert {s["type"] for s in sources} == {"prometheus", "jaeger"}
    for source in sources:
        url = urlsplit(source["url"])
        assert url.hostname in services, f"{source['name']}: no compose service {url.hostname}"
        published = {str(p).rsplit(":", 1)[-1] for p in services[url.hostname].get("ports", [])}
        assert str(url.port) in published, f"{source['name']}: {url.hostname} listens elsewhere"
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/dashboards.yml").read_text())["providers"][
        0
    ]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in services["grafana"]["volumes"]


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _series_used(expr: str) -> tuple[list[tuple[str, set[str]]], list[set[str]]]:
    """The selectors (metric name, matcher labels) and the grouping label sets of a query."""
    # Grafana's variables are not PromQL: a sample value stands in for them.
    ast = promql_parser.parse(re.sub(r"\$\w+", "5m", expr))
    selectors: list[tuple[str, set[str]]] = []
    groupings: list[set[str]] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            # A selector without a name ({__name__=~"..."}) would hide what it reads: refused.
            assert node.name, f"{expr}: name the metric"
            selectors.append((node.name, {m.name for m in node.matchers.matchers}))
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            groupings.append(set(node.modifier.labels))
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier and node.modifier.matching:
            groupings.append(set(node.modifier.matching.labels))
        return True

    promql_parser.walk(ast, visit)
    return selectors, groupings


def _contract_name(series: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        base = series.removesuffix(suffix)
        if base != series and base in HISTOGRAMS:
            return base
    return series


def test_the_dashboard_queries_contract_metrics_by_their_labels() -> None:
    dashboard = json.loads((GRAFANA / "dashboards/suanli-overview.json").read_text())
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/datasources.yml").read_text())[
        "datasources"
    ]
    uids = {s["uid"]: s["type"] for s in sources}
    shown = set()
    for panel in _panels(dashboard):
        for datasource in [panel.get("datasource"), *(t.get("datasource") for t in panel.get("targets", []))]:
            if datasource is not None:
                assert uids.get(datasource["uid"]) == datasource["type"], (
                    f"{panel['title']}: unknown data source"
                )
        for target in panel.get("targets", []):
            datasource = target.get("datasource", panel.get("datasource"))
            if datasource["type"] != "prometheus":
                continue
            selectors, groupings = _series_used(target["expr"])
            assert selectors, f"{panel['title']}: {target['expr']} reads no metric"
            labels = set(TARGET_LABELS)
            for series, matchers in selectors:
                name = _contract_name(series)
                assert name in METRICS, f"{panel['title']}: {series} is not a metric the services export"
                labels |= METRICS[name] | ({"le"} if series.endswith("_bucket") else set())
                assert matchers <= labels, f"{panel['title']}: {series} has no label {matchers - labels}"
                shown.add(name)
            for grouping in groupings:
                assert grouping <= labels, f"{panel['title']}: no label {grouping - labels} to group by"
    assert shown >= DASHBOARD_MUST_SHOW, f"the dashboard misses {DASHBOARD_MUST_SHOW - shown}"


def test_the_dashboard_shows_the_gateway_traces_in_jaeger() -> None:
    from suanli_inference_gateway.settings import GatewaySettings

    dashboard = json.loads((GRAFANA / "dashboards/suanli-overview.json").read_text())
    traced = f"suanli-{GatewaySettings.service_name}"  # the service.name the gateway's spans carry
    searches = [t for p in _panels(dashboard) for t in p.get("targets", []) if t.get("queryType") == "search"]
    assert [t["service"] for t in searches] == [traced]
    jaeger_port = _compose()["services"]["jaeger"]["ports"][0].split(":")[0]
    assert any(link["url"].startswith(f"http://localhost:{jaeger_port}/") for link in dashboard["links"])


def test_the_contract_is_what_the_services_register() -> None:
    sources = [*ROOT.glob("services/*/suanli_*/**/*.py"), *ROOT.glob("libs/common/suanli_common/*.py")]
    text = "\n".join(path.read_text() for path in sources)
    for name in METRICS:
        # prometheus_client drops a counter's _total when it is declared and adds it back on export.
        assert f'"{name}"' in text or f'"{name.removesuffix("_total")}"' in text, f"nothing registers {name}"
