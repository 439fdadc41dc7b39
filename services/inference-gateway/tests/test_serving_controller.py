"""The serving controller's reconciliation against a fake Serve and a fake scheduler: what it
starts, reports, drains and removes. (The real Ray Serve path runs in tests/integration.)"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from suanli_inference_gateway.clients.deployments import Deployment, DeploymentSpec, DeploymentStatus
from suanli_inference_gateway.serving.adapters import ADAPTERS_ENV, SERVER_CLASS, adapter_rank
from suanli_inference_gateway.serving.apps import llm_config_kwargs
from suanli_inference_gateway.serving.controller import REPLACING, AppState, ServingController
from suanli_inference_gateway.serving.settings import ServingSettings


class FakeServe:
    def __init__(self) -> None:
        self.apps: dict[str, AppState] = {}
        self.refuse: str | None = None
        self.deleted: list[str] = []

    def applications(self) -> dict[str, AppState]:
        return dict(self.apps)

    def deploy(self, deployment: Deployment) -> None:
        if self.refuse:
            raise ValueError(self.refuse)
        self.apps[deployment.id] = AppState("DEPLOYING")

    def delete(self, name: str) -> None:
        self.deleted.append(name)
        self.apps[name] = AppState("DELETING")

    def endpoint(self, deployment_id: str) -> str:
        return f"http://serve:8000/{deployment_id}"


class FakeScheduler:
    def __init__(self, *deployments: Deployment) -> None:
        self.deployments = {d.id: d for d in deployments}
        self.reports: list[tuple[str, DeploymentStatus, str]] = []

    async def list(self, caller_id: str, include_public: bool = False) -> list[Deployment]:
        assert caller_id == ""
        return [d for d in self.deployments.values() if d.status != DeploymentStatus.stopped]

    async def report(
        self,
        deployment_id: str,
        status: DeploymentStatus,
        *,
        reason: str = "",
        endpoint: str = "",
        ready_replicas: int = 0,
    ) -> Deployment:
        self.reports.append((deployment_id, status, reason))
        self.deployments[deployment_id] = replace(
            self.deployments[deployment_id],
            status=status,
            status_reason=reason,
            endpoint=endpoint,
            ready_replicas=ready_replicas,
        )
        return self.deployments[deployment_id]

    async def create(self, *args: object) -> Deployment:
        raise NotImplementedError

    async def get(self, caller_id: str, deployment_id: str) -> Deployment:
        return self.deployments[deployment_id]

    async def delete(self, caller_id: str, deployment_id: str) -> Deployment:
        raise NotImplementedError


def deploying(dep_id: str = "dep_1", gpu_type: str = "cpu") -> Deployment:
    return Deployment(
        id=dep_id,
        owner_id="alice",
        spec=DeploymentSpec(model_id="m", model_path="/models/m", served_model="m", max_model_len=512),
        status=DeploymentStatus.deploying,
        gpu_type=gpu_type,
    )


@pytest.fixture
def serve() -> FakeServe:
    return FakeServe()


async def test_a_deploying_deployment_is_started_then_reported_ready(serve: FakeServe) -> None:
    scheduler = FakeScheduler(deploying())
    controller = ServingController(scheduler, serve)
    await controller.reconcile()
    assert serve.apps["dep_1"].status == "DEPLOYING"
    await controller.reconcile()  # still deploying: started once, nothing more to say
    assert [r[1] for r in scheduler.reports] == [DeploymentStatus.deploying]
    serve.apps["dep_1"] = AppState("RUNNING", running_replicas=1)
    await controller.reconcile()
    assert scheduler.deployments["dep_1"].status == DeploymentStatus.ready
    assert scheduler.deployments["dep_1"].endpoint == "http://serve:8000/dep_1"
    await controller.reconcile()
    assert len(scheduler.reports) == 2


async def test_a_ready_deployment_whose_replicas_died_is_deploying_until_serve_replaces_them(
    serve: FakeServe,
) -> None:
    scheduler = FakeScheduler(deploying())
    controller = ServingController(scheduler, serve)
    await controller.reconcile()
    serve.apps["dep_1"] = AppState("RUNNING", running_replicas=1)
    await controller.reconcile()
    assert scheduler.deployments["dep_1"].status == DeploymentStatus.ready

    serve.apps["dep_1"] = AppState("DEPLOYING", running_replicas=0)
    await controller.reconcile()
    lost = scheduler.deployments["dep_1"]
    assert (lost.status, lost.status_reason) == (DeploymentStatus.deploying, REPLACING)
    assert lost.endpoint == "http://serve:8000/dep_1"
    assert serve.deleted == []  # Serve replaces the replica itself; the app is left alone

    serve.apps["dep_1"] = AppState("RUNNING", running_replicas=1)
    await controller.reconcile()
    assert scheduler.deployments["dep_1"].status == DeploymentStatus.ready


async def test_replicas_that_fail_to_start_fail_the_deployment_with_the_reason(serve: FakeServe) -> None:
    scheduler = FakeScheduler(deploying())
    controller = ServingController(scheduler, serve)
    await controller.reconcile()
    serve.apps["dep_1"] = AppState(
        "DEPLOY_FAILED", message="Traceback ...\nValueError: no config.json in /models/m"
    )
    await controller.reconcile()
    assert scheduler.deployments["dep_1"].status == DeploymentStatus.failed
    assert "no config.json" in scheduler.deployments["dep_1"].status_reason
    assert serve.deleted == ["dep_1"]


async def test_a_config_serve_refuses_fails_at_once(serve: FakeServe) -> None:
    serve.refuse = "model_source must be a local path"
    scheduler = FakeScheduler(deploying())
    await ServingController(scheduler, serve).reconcile()
    assert scheduler.deployments["dep_1"].status == DeploymentStatus.failed
    assert scheduler.deployments["dep_1"].status_reason == "model_source must be a local path"


async def test_a_stopping_deployment_is_drained_then_reported_stopped(serve: FakeServe) -> None:
    scheduler = FakeScheduler(replace(deploying(), status=DeploymentStatus.stopping))
    serve.apps["dep_1"] = AppState("RUNNING", running_replicas=1)
    controller = ServingController(scheduler, serve)
    await controller.reconcile()
    assert serve.deleted == ["dep_1"] and not scheduler.reports
    del serve.apps["dep_1"]  # Serve finished deleting it
    await controller.reconcile()
    assert scheduler.deployments["dep_1"].status == DeploymentStatus.stopped


async def test_applications_no_deployment_wants_are_removed(serve: FakeServe) -> None:
    serve.apps = {"dep_gone": AppState("RUNNING"), "someone_elses_app": AppState("RUNNING")}
    await ServingController(FakeScheduler(), serve).reconcile()
    assert serve.deleted == ["dep_gone"]


def test_cpu_slots_run_the_cpu_engine_and_gpus_tensor_parallel() -> None:
    settings = ServingSettings(cpu_kv_cache_gib=2, cpu_threads_bind="0")
    cpu = llm_config_kwargs(deploying(gpu_type="cpu"), settings)
    assert cpu["accelerator_config"] == {"kind": "cpu"}
    assert cpu["runtime_env"]["env_vars"] == {
        "OTEL_SERVICE_NAME": "suanli-replica",
        "VLLM_CPU_KVCACHE_SPACE": "2",
        "VLLM_CPU_OMP_THREADS_BIND": "0",
    }
    assert cpu["engine_kwargs"]["max_model_len"] == 512
    assert cpu["model_loading_config"] == {"model_id": "m", "model_source": "/models/m"}
    gpu_deployment = replace(deploying(gpu_type="A100-80G"), spec=replace(deploying().spec, gpu_count=2))
    gpu = llm_config_kwargs(gpu_deployment, settings)
    assert gpu["engine_kwargs"]["tensor_parallel_size"] == 2 and "accelerator_config" not in gpu
    assert gpu["runtime_env"]["env_vars"] == {"OTEL_SERVICE_NAME": "suanli-replica"}


def test_an_adapter_deployment_runs_its_base_with_lora_and_loads_the_adapter_from_its_folder(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"r": 12, "rank_pattern": {"q_proj": 4}}))
    spec = replace(
        deploying().spec,
        served_model="ft:m:s:job_1:adapter",
        adapter_id="ft:m:s:job_1:adapter",
        adapter_path=str(folder),
    )
    config = llm_config_kwargs(replace(deploying(), spec=spec), ServingSettings())
    # The app serves the base under a colon-free name; requests name `base:adapter`, which Ray
    # Serve LLM routes to the base's replicas with the adapter as the multiplexed model.
    assert config["model_loading_config"] == {
        "model_id": "ft--m--s--job_1--adapter",
        "model_source": "/models/m",
    }
    assert spec.engine_model == "ft--m--s--job_1--adapter:adapter"
    assert config["server_cls"] == SERVER_CLASS and config["lora_config"] == {
        "max_num_adapters_per_replica": 1
    }
    engine = config["engine_kwargs"]
    assert (engine["enable_lora"], engine["max_loras"], engine["max_lora_rank"]) == (True, 1, 16)  # 12 -> 16
    assert json.loads(config["runtime_env"]["env_vars"][ADAPTERS_ENV]) == {"adapter": str(folder)}
    # Without an adapter: Ray's own server, no LoRA.
    plain = llm_config_kwargs(deploying(), ServingSettings())
    assert "server_cls" not in plain and "enable_lora" not in plain["engine_kwargs"]
    assert deploying().spec.engine_model == "m"


def test_an_adapter_over_vllms_largest_rank_is_refused(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 1024}))
    with pytest.raises(ValueError, match="over vLLM's largest"):
        adapter_rank(str(tmp_path))


async def test_the_replicas_adapter_loader_reads_the_folder_it_was_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from suanli_inference_gateway.serving.adapter_server import AdapterFolderLoader

    monkeypatch.setenv(ADAPTERS_ENV, json.dumps({"adapter": "/store/adapter"}))
    loaded = await AdapterFolderLoader().load_model_from_config("base:adapter", None)
    assert (loaded.model_id, loaded.local_path) == ("base:adapter", "/store/adapter")
    with pytest.raises(ValueError, match="no adapter 'other'"):
        await AdapterFolderLoader().load_model_from_config("base:other", None)


def test_serve_traces_over_otlp_only_when_an_endpoint_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.serve._private.tracing_utils import _load_span_processors

    from suanli_inference_gateway.serving.tracing import EXPORTER_IMPORT_PATH, serve_tracing_env

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert serve_tracing_env() == {}
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    env = serve_tracing_env()
    assert env["RAY_SERVE_TRACING_EXPORTER_IMPORT_PATH"] == EXPORTER_IMPORT_PATH
    # What Serve does in its proxy and each replica: import the function, check its shape and
    # what it returns.
    processors = _load_span_processors(EXPORTER_IMPORT_PATH, "replica_tracing.json")
    assert [type(p).__name__ for p in processors] == ["BatchSpanProcessor"]
    for processor in processors:
        processor.shutdown()
