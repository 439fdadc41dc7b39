"""The serving controller's settings (`SUANLI_SERVING_*`, and Ray's own `RAY_ADDRESS`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import AliasChoices, Field

from suanli_common.settings import ServiceSettings


class ServingSettings(ServiceSettings):
    service_name: ClassVar[str] = "serving"

    ray_address: str = Field(
        "",
        validation_alias=AliasChoices("RAY_ADDRESS", "SUANLI_RAY_ADDRESS"),
        description="An existing Ray cluster to join (RAY_ADDRESS); empty: start a local one",
    )
    ray_num_cpus: int = Field(
        8,
        description="Logical CPUs of the local Ray cluster: a scheduling budget, not cores. Serve's "
        "controller, proxy, each replica and its ingress need one each, so a 2-core machine needs more",
    )
    serve_host: str = Field("127.0.0.1", description="Interface Ray Serve's HTTP proxy binds")
    serve_port: int = Field(8000, description="Ray Serve's HTTP port (SUANLI_SERVE_PORT)")
    public_serve_url: str = Field(
        "", description="The Serve proxy's URL as the gateway reaches it; empty: http://serve_host:serve_port"
    )
    cpu_kv_cache_gib: float = Field(
        1.0, gt=0, description="KV cache of a vLLM replica on the CPU (VLLM_CPU_KVCACHE_SPACE)"
    )
    cpu_threads_bind: str = Field(
        "",
        description="Cores a CPU replica's engine threads are bound to (VLLM_CPU_OMP_THREADS_BIND, e.g. "
        "'0' or '0-5'); empty: vLLM's choice, every core. Leave some to the gateway and Serve's proxy",
    )
    enforce_eager: bool = Field(
        True, description="Skip vLLM's graph compilation: replicas start tens of seconds sooner"
    )
    reconcile_interval_s: float = Field(
        5.0, gt=0, description="How often deployments are compared with Serve"
    )
    deploy_seed: bool = Field(
        True, description="On first start, deploy the seed chat model for every user (SUANLI_DEPLOY_SEED)"
    )
    seed_model_id: str = Field("smollm2-135m-instruct", description="The model the seed deployment serves")
    seed_max_model_len: int = Field(2048, description="Context length of the seed deployment")

    @property
    def serve_url(self) -> str:
        return self.public_serve_url or f"http://{self.serve_host}:{self.serve_port}"
