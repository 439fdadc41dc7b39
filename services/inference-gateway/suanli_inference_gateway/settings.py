"""The gateway's settings (`SUANLI_*` variables); defaults are the embedded ones of `make run`."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from suanli_common.settings import ServiceSettings


def _repo_web_dir() -> Path | None:
    # services/inference-gateway/suanli_inference_gateway/settings.py -> the repository root
    candidate = Path(__file__).resolve().parents[3] / "web"
    return candidate if candidate.is_dir() else None


class GatewaySettings(ServiceSettings):
    service_name: ClassVar[str] = "gateway"

    http_host: str = Field("127.0.0.1", description="Interface the public HTTP port binds")
    http_port: int = Field(8080, description="The public HTTP port (SUANLI_HTTP_PORT)")
    forwarded_allow_ips: str = Field(
        "127.0.0.1",
        description="Proxies whose X-Forwarded-For is trusted for the client address (uvicorn's setting)",
    )
    key_cache_ttl_s: float = Field(30.0, description="How long a resolved API key is trusted without auth")
    key_cache_negative_ttl_s: float = Field(
        2.0, description="How long a rejected API key is remembered (kept short: a new key must work)"
    )
    key_cache_max_entries: int = Field(10_000, description="Bound of the API key cache")
    signin_limit_per_ip: int = Field(20, description="Sign-in attempts per client IP per window")
    signin_limit_per_account: int = Field(10, description="Sign-in attempts per e-mail address per window")
    signin_window_s: float = Field(60.0, description="Window of the sign-in rate limits")
    web_dir: Path | None = Field(
        default_factory=_repo_web_dir,
        description="The console's static files, served at /; none: no console",
    )
    ready_services: list[str] = Field(
        default_factory=lambda: ["auth", "catalog", "scheduler", "rag"],
        description="Services whose gRPC health /readyz checks (addresses from <name>_address)",
    )
    ready_timeout_s: float = Field(1.0, description="Deadline of each /readyz check")
    seed_models: bool = Field(
        True,
        description="The catalog brings the seed models (SUANLI_SEED_MODELS, read by the catalog too): "
        "/readyz then waits until the seed chat model is ready",
    )
    seed_model_id: str = Field("smollm2-135m-instruct", description="The seed chat model /readyz waits for")
    inference_requests_per_minute: int = Field(
        600, ge=1, description="Inference requests an API key may send per minute (429 beyond)"
    )
    inference_tokens_per_minute: int = Field(
        1_000_000, ge=1, description="Prompt and completion tokens an API key may use per minute"
    )
    inference_timeout_s: float = Field(
        600.0, gt=0, description="Deadline of one inference request to a replica (a long generation)"
    )
    inference_max_connections: int = Field(
        1000, ge=1, description="Connections the gateway keeps open to Ray Serve"
    )
    inference_keepalive_s: float = Field(
        4.0,
        gt=0,
        description="How long an idle connection to a replica is reused: below the keep-alive timeout "
        "of the replica's server (Ray Serve's proxy: 90 s; uvicorn's default: 5 s), so that a request "
        "never races the server closing it",
    )
    quota_cache_s: float = Field(
        2.0,
        ge=0,
        description="How long a user's token quota status (auth's GetQuotaStatus) is trusted before "
        "the inference routes ask auth again (SUANLI_QUOTA_CACHE_S)",
    )
    quota_lookup_timeout_s: float = Field(
        1.0,
        gt=0,
        description="Deadline of that lookup; past it (or with auth down) the request goes through",
    )
    routing_resync_s: float = Field(
        30.0, gt=0, description="How often the routing table is read whole (events update it between)"
    )
    upload_chunk_bytes: int = Field(64 * 1024, gt=0, description="Size of the blocks an upload streams in")
    upload_timeout_s: float = Field(
        3600.0, gt=0, description="Deadline of a file upload to the catalog (transfer and validation)"
    )
    instance_proxy_timeout_s: float = Field(
        600.0, gt=0, description="Deadline of one request proxied to an instance's server (/instances/)"
    )

    def service_address(self, name: str) -> str:
        address = getattr(self, f"{name}_address", None)
        if not isinstance(address, str):
            raise ValueError(f"unknown service {name!r} in ready_services: no {name}_address setting")
        return address
