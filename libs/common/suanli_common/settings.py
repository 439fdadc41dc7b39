"""Settings every service shares, read from `SUANLI_*` environment variables.

Each service subclasses `ServiceSettings` once (in its own `settings.py`) and adds its fields;
the defaults are the embedded ones that `make run` and the tests use.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

EMBEDDED_NATS_PORT = 14222  # not 4222, which a system NATS may already hold


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SUANLI_", extra="ignore")

    service_name: ClassVar[str] = "suanli"

    home: Path = Field(Path("./var"), description="Root of all embedded state")
    nats_url: str = Field(f"nats://127.0.0.1:{EMBEDDED_NATS_PORT}", description="NATS server(s)")
    nats_stream_replicas: int = Field(
        1, ge=1, le=5, description="JetStream replicas of each stream: 3 on a NATS cluster, 1 on one server"
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy async URL (postgresql+asyncpg://...); default: SQLite per service",
    )
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    grpc_timeout_s: float = Field(5.0, description="Default deadline of a gRPC call")
    auth_address: str = Field("127.0.0.1:50051", description="host:port of the auth gRPC API")
    catalog_address: str = Field("127.0.0.1:50052", description="host:port of the catalog gRPC API")
    scheduler_address: str = Field("127.0.0.1:50053", description="host:port of the scheduler API")
    rag_address: str = Field("127.0.0.1:50054", description="host:port of the rag gRPC API")

    @property
    def service_home(self) -> Path:
        path = self.home.resolve() / self.service_name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.service_home / 'db.sqlite3'}"
