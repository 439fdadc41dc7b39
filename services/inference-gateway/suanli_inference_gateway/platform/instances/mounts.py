"""An instance's mounts, checked with the catalog before the scheduler sees them: each model,
adapter and dataset must be one the caller may read, and becomes a source the agent copies from.
Jobs and instances (TensorBoard's logs) are the scheduler's to check: it owns them."""

from __future__ import annotations

from suanli_common.errors import InvalidRequest, NotFound
from suanli_inference_gateway.clients.catalog import CatalogApi
from suanli_inference_gateway.clients.instances import Mount
from suanli_inference_gateway.job_inputs import require_model
from suanli_inference_gateway.platform.instances.protocol import MountsRequest

MODEL_KINDS = ("base", "fine_tuned", "embedding")  # whole models (adapters are mounted as such)


def folder_name(model_id: str) -> str:
    """A model id as one folder name (hub-style ids hold a '/')."""
    return model_id.replace("/", "--")


def _unique(ids: list[str], param: str) -> list[str]:
    if len(set(ids)) != len(ids):
        raise InvalidRequest(f"{param} names the same id twice", param=param)
    return ids


async def resolve_mounts(catalog: CatalogApi, caller_id: str, request: MountsRequest) -> tuple[Mount, ...]:
    mounts: list[Mount] = []
    for model_id in _unique(request.models, "mounts.models"):
        model = await require_model(catalog, caller_id, model_id, "mounts.models", kinds=MODEL_KINDS)
        mounts.append(Mount("model", model.id, folder_name(model.id), model.path))
    for adapter_id in _unique(request.adapters, "mounts.adapters"):
        adapter = await require_model(catalog, caller_id, adapter_id, "mounts.adapters", kinds=("adapter",))
        mounts.append(Mount("adapter", adapter.id, folder_name(adapter.id), adapter.path))
    names: set[str] = set()
    for file_id in _unique(request.datasets, "mounts.datasets"):
        try:
            stored = await catalog.get_file(caller_id, file_id)
        except NotFound:
            raise InvalidRequest(
                f"the file {file_id!r} does not exist or you do not have access to it",
                param="mounts.datasets",
                code="file_not_found",
            ) from None
        # Two uploads of one file name are told apart by their ids.
        name = stored.filename if stored.filename not in names else f"{stored.id}-{stored.filename}"
        names.add(name)
        mounts.append(Mount("dataset", stored.id, name, await catalog.file_url(caller_id, file_id)))
    for job_id in _unique(request.jobs, "mounts.jobs"):
        mounts.append(Mount("job", job_id, job_id))
    for instance_id in _unique(request.instances, "mounts.instances"):
        mounts.append(Mount("instance", instance_id, instance_id))
    return tuple(mounts)
