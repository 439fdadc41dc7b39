"""docker-compose.yml stays coherent: every build points at a Dockerfile that exists, every
service reaches NATS and PostgreSQL by their compose names (no Docker engine runs here, so the
file is checked, not started)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


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
