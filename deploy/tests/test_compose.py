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
