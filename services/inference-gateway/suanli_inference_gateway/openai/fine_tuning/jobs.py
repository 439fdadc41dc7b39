"""Fine-tunes as scheduler jobs: checking a create request against the catalog and the cluster,
the job it becomes, and the OpenAI object a job is shown as."""

from __future__ import annotations

import json
import secrets
from typing import Any

from pydantic import BaseModel

from suanli_common.errors import InvalidRequest
from suanli_common.ids import adapter_model_id
from suanli_inference_gateway.clients.catalog import CatalogApi
from suanli_inference_gateway.clients.scheduler import (
    FineTuneSpec,
    GpuSlots,
    Job,
    JobSpec,
    JobStatus,
    JobType,
)
from suanli_inference_gateway.job_inputs import PUBLIC_STATUS, require_dataset, require_model
from suanli_inference_gateway.openai.fine_tuning.protocol import (
    CreateFineTuningJobRequest,
    ErrorObject,
    FineTuningJobObject,
    HyperparametersObject,
    MethodObject,
    SupervisedMethod,
    SupervisedObject,
)
from suanli_inference_gateway.platform.protocol import optional_unix_seconds, unix_seconds

RUNNER_COMMAND = "python -m suanli_trainer_agent.finetune"
REQUEST_LABEL = "fine_tuning.request"
CPU = "cpu"  # the slot type of agents without a GPU (SUANLI_AGENT_SLOTS=cpu:N)


class AcceptedFineTune(BaseModel):
    """The create request as accepted (a drawn seed, hyperparameters in one place); kept with the
    job as a label and read back to show it."""

    model: str
    training_file: str
    validation_file: str | None
    supervised: SupervisedMethod
    suffix: str | None
    seed: int
    metadata: dict[str, str] | None

    @classmethod
    def of(cls, request: CreateFineTuningJobRequest) -> AcceptedFineTune:
        return cls(
            model=request.model,
            training_file=request.training_file,
            validation_file=request.validation_file,
            supervised=request.supervised,
            suffix=request.suffix,
            seed=request.seed if request.seed is not None else secrets.randbelow(2**31),
            metadata=request.metadata,
        )


def is_fine_tune(job: Job) -> bool:
    return job.spec.job_type is JobType.fine_tune and REQUEST_LABEL in job.spec.labels


def accepted_of(job: Job) -> AcceptedFineTune:
    return AcceptedFineTune.model_validate_json(job.spec.labels[REQUEST_LABEL])


def _local_path(url: str, param: str) -> str:
    if not url.startswith("file://"):
        raise InvalidRequest(
            "validation files need the catalog's local store (this one keeps files in object storage)",
            param=param,
        )
    return url.removeprefix("file://")


def _placement(metadata: dict[str, str] | None, training: str, gpus: list[GpuSlots]) -> tuple[str, int]:
    """(gpu_type, gpu_count) from metadata; qlora only where a GPU type other than `cpu` exists."""
    metadata = metadata or {}
    gpu_type = metadata.get("gpu_type", "")
    try:
        count = int(metadata.get("gpu_count", "1"))
    except ValueError:
        count = 0
    if not 1 <= count <= 8:
        raise InvalidRequest(
            "metadata.gpu_count must be a whole number from 1 to 8", param="metadata.gpu_count"
        )
    if count > 1:
        # The runner trains on one device; a multi-GPU request would hold slots it leaves idle.
        raise InvalidRequest(
            "fine-tunes run on one GPU for now: set gpu_count to 1", param="metadata.gpu_count"
        )
    if training == "qlora":
        types = sorted({g.gpu_type for g in gpus if g.gpu_type.lower() != CPU})
        if gpu_type.lower() == CPU or not types:
            raise InvalidRequest(
                "qlora needs a CUDA GPU (its 4-bit weights come from bitsandbytes) and this cluster "
                "offers none for it; use method.supervised.training 'lora'",
                param="method.supervised.training",
            )
        gpu_type = gpu_type or types[0]
    return gpu_type, count


def _runner_config(accepted: AcceptedFineTune, validation_path: str | None) -> dict[str, Any]:
    supervised = accepted.supervised
    config: dict[str, Any] = {
        "method": supervised.training,
        "n_epochs": supervised.hyperparameters.n_epochs,
        "batch_size": supervised.hyperparameters.batch_size,
        "learning_rate_multiplier": supervised.hyperparameters.learning_rate_multiplier,
        "lora_rank": supervised.lora.rank,
        "lora_alpha": supervised.lora.alpha,
        "lora_dropout": supervised.lora.dropout,
        "target_modules": supervised.lora.target_modules,
        "max_seq_length": supervised.max_seq_length,
        "seed": accepted.seed,
        "suffix": accepted.suffix or "",
    }
    if supervised.checkpoint_every_steps is not None:
        config["save_every_steps"] = supervised.checkpoint_every_steps
    if validation_path is not None:
        config["validation_file"] = validation_path
    return config


async def build_job_spec(
    request: CreateFineTuningJobRequest, caller_id: str, catalog: CatalogApi, gpus: list[GpuSlots]
) -> JobSpec:
    """The scheduler job a create request becomes; refuses (InvalidRequest) what cannot train."""
    base = await require_model(catalog, caller_id, request.model, "model")
    await require_dataset(catalog, caller_id, request.training_file, "training_file")
    validation_path = None
    if request.validation_file:
        await require_dataset(catalog, caller_id, request.validation_file, "validation_file")
        validation_path = _local_path(
            await catalog.file_url(caller_id, request.validation_file), "validation_file"
        )
    accepted = AcceptedFineTune.of(request)
    gpu_type, gpu_count = _placement(accepted.metadata, accepted.supervised.training, gpus)
    return JobSpec(
        name=f"fine-tune {base.id}" + (f" ({accepted.suffix})" if accepted.suffix else ""),
        job_type=JobType.fine_tune,
        command=RUNNER_COMMAND,
        gpus_per_node=gpu_count,
        gpu_type=gpu_type,
        ckpt_path="checkpoints",
        model_save_path="output",
        env={"SUANLI_FINETUNE_CONFIG": json.dumps(_runner_config(accepted, validation_path))},
        model_path=base.path,
        dataset_path=await catalog.file_url(caller_id, request.training_file),
        fine_tune=FineTuneSpec(base_model=base.id, suffix=accepted.suffix or ""),
        labels={REQUEST_LABEL: accepted.model_dump_json()},
    )


def _result(job: Job) -> dict[str, Any]:
    if not job.result_json:
        return {}
    try:
        result = json.loads(job.result_json)
    except ValueError:
        return {}
    return result if isinstance(result, dict) else {}


def _error(job: Job) -> ErrorObject | None:
    if job.status is JobStatus.timed_out:
        return ErrorObject(
            code="timed_out", message=job.status_reason or "the fine-tune ran past its time limit"
        )
    if job.status is JobStatus.failed:
        return ErrorObject(code="job_failed", message=job.status_reason or "the fine-tune failed")
    return None


def fine_tuning_object(job: Job) -> FineTuningJobObject:
    accepted = accepted_of(job)
    supervised = accepted.supervised
    requested = supervised.hyperparameters
    # After the run, "auto" shows what it became (as OpenAI's objects do).
    result = _result(job)
    resolved = result.get("hyperparameters") or {}
    hyperparameters = HyperparametersObject(
        n_epochs=resolved.get("n_epochs", requested.n_epochs),
        batch_size=resolved.get("batch_size", requested.batch_size),
        learning_rate_multiplier=requested.learning_rate_multiplier,
    )
    succeeded = job.status is JobStatus.succeeded
    trained_tokens = result.get("trained_tokens")
    return FineTuningJobObject(
        id=job.id,
        created_at=unix_seconds(job.created_at),
        error=_error(job),
        fine_tuned_model=job.output_model_id if succeeded else None,
        adapter_model=(
            adapter_model_id(job.output_model_id) if succeeded and supervised.training != "full" else None
        ),
        finished_at=optional_unix_seconds(job.finished_at),
        hyperparameters=hyperparameters,
        method=MethodObject(
            supervised=SupervisedObject(
                hyperparameters=hyperparameters,
                training=supervised.training,
                lora=supervised.lora if supervised.training != "full" else None,
                max_seq_length=supervised.max_seq_length,
            )
        ),
        model=accepted.model,
        organization_id=job.owner_id,
        seed=accepted.seed,
        status=PUBLIC_STATUS[job.status],
        trained_tokens=trained_tokens if succeeded and isinstance(trained_tokens, int) else None,
        training_file=accepted.training_file,
        validation_file=accepted.validation_file,
        metadata=accepted.metadata,
        user_provided_suffix=accepted.suffix,
    )
