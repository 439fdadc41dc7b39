"""/api/v1/deployments: serve a model of the repository behind the OpenAI API. The scheduler owns
deployments and the slots they hold; the gateway checks the model with the catalog first."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Header, Request, status

from suanli_common.errors import Conflict, InvalidRequest, PermissionDenied
from suanli_inference_gateway.authentication.dependency import require_principal
from suanli_inference_gateway.clients.auth import Principal
from suanli_inference_gateway.clients.catalog import CatalogApi, Model
from suanli_inference_gateway.clients.deployments import DeploymentsApi, DeploymentSpec
from suanli_inference_gateway.dependencies import gateway_deps, require_deployments
from suanli_inference_gateway.job_inputs import SERVABLE_KINDS, require_model
from suanli_inference_gateway.platform.deployments.protocol import (
    CreateDeploymentRequest,
    DeploymentList,
    DeploymentObject,
)
from suanli_inference_gateway.platform.protocol import client_request_id

router = APIRouter(prefix="/deployments", tags=["deployments"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DeploymentObject)
async def create_deployment(
    body: CreateDeploymentRequest,
    request: Request,
    principal: Principal = Depends(require_principal),
    deployments: DeploymentsApi = Depends(require_deployments),
    idempotency_key: str | None = Header(None, alias="Idempotency-Key"),
) -> DeploymentObject:
    catalog = gateway_deps(request).catalog
    model, adapter = await _model_and_adapter(catalog, principal.user_id, body)
    served = adapter or model
    if body.max_model_len and model.context_length and body.max_model_len > model.context_length:
        raise InvalidRequest(
            f"max_model_len {body.max_model_len} is over the model's context length {model.context_length}",
            param="max_model_len",
        )
    # A retried create that carries its key is the scheduler's to answer (the same deployment).
    if idempotency_key is None:
        for existing in await deployments.list(principal.user_id):
            if existing.owner_id == principal.user_id and existing.spec.served_model == served.id:
                raise Conflict(
                    f"You already deploy {served.id!r} as {existing.id} ({existing.status.value}); "
                    "delete it first or use that one.",
                    param="model",
                    code="deployment_exists",
                )
    spec = DeploymentSpec(
        model_id=model.id,
        model_path=model.path,
        served_model=served.id,
        adapter_id=adapter.id if adapter else "",
        adapter_path=adapter.path if adapter else "",
        gpu_type=body.gpu_type or "",
        gpu_count=body.gpu_count,
        min_replicas=body.min_replicas,
        max_replicas=body.max_replicas or body.min_replicas,
        max_model_len=body.max_model_len or 0,
    )
    deployment = await deployments.create(principal.user_id, client_request_id(idempotency_key), spec)
    return DeploymentObject.of(deployment)


async def _model_and_adapter(
    catalog: CatalogApi, caller_id: str, body: CreateDeploymentRequest
) -> tuple[Model, Model | None]:
    """The model to load and the LoRA adapter to apply on it, if any: `adapter` names one of
    `model`, or `model` itself is an adapter, deployed on the base it was trained from."""
    if body.adapter is not None:
        adapter = await require_model(catalog, caller_id, body.adapter, "adapter", kinds=("adapter",))
        base = await require_model(catalog, caller_id, body.model, "model")
        if adapter.base_model_id != base.id:
            raise InvalidRequest(
                f"the adapter {adapter.id!r} was trained on {adapter.base_model_id!r}, not on {base.id!r}",
                param="adapter",
            )
        return base, adapter
    asked = await require_model(catalog, caller_id, body.model, "model", kinds=(*SERVABLE_KINDS, "adapter"))
    if asked.kind != "adapter":
        return asked, None
    return await require_model(catalog, caller_id, asked.base_model_id, "model"), asked


@router.get("", response_model=DeploymentList)
async def list_deployments(
    principal: Principal = Depends(require_principal),
    deployments: DeploymentsApi = Depends(require_deployments),
) -> DeploymentList:
    found = await deployments.list(principal.user_id, include_public=True)
    return DeploymentList(data=[DeploymentObject.of(d) for d in found])


@router.get("/{deployment_id}", response_model=DeploymentObject)
async def get_deployment(
    deployment_id: str,
    principal: Principal = Depends(require_principal),
    deployments: DeploymentsApi = Depends(require_deployments),
) -> DeploymentObject:
    return DeploymentObject.of(await deployments.get(principal.user_id, deployment_id))


@router.delete("/{deployment_id}", response_model=DeploymentObject)
async def delete_deployment(
    deployment_id: str,
    principal: Principal = Depends(require_principal),
    deployments: DeploymentsApi = Depends(require_deployments),
) -> DeploymentObject:
    deployment = await deployments.get(principal.user_id, deployment_id)
    if deployment.owner_id != principal.user_id and principal.role != "admin":
        raise PermissionDenied(
            f"Deployment {deployment_id} is shared by the platform; only an administrator may delete it.",
            code="not_owner",
        )
    # An administrator deletes a shared deployment on its owner's behalf.
    return DeploymentObject.of(await deployments.delete(deployment.owner_id, deployment_id))
