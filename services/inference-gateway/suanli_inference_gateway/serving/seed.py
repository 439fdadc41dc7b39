"""The seed deployment: on a platform's first start, the seed chat model is deployed for every
user, so a new user can chat minutes after cloning. It is created once (an idempotent create
keyed by a fixed request id), so deleting it is respected on the next start."""

from __future__ import annotations

import asyncio

from suanli_common.errors import NotFound
from suanli_common.logging import get_logger
from suanli_inference_gateway.clients.catalog import CatalogApi
from suanli_inference_gateway.clients.deployments import DeploymentsApi, DeploymentSpec
from suanli_inference_gateway.serving.settings import ServingSettings

log = get_logger(__name__)

SYSTEM_OWNER = "system"
SEED_REQUEST_ID = "seed-deployment"


async def deploy_seed_once(
    catalog: CatalogApi, deployments: DeploymentsApi, settings: ServingSettings, poll_s: float = 5.0
) -> None:
    while True:
        try:
            model = await catalog.get_model(SYSTEM_OWNER, settings.seed_model_id)
        except NotFound:
            model = None
        except Exception as exc:  # the catalog is still starting
            log.debug("catalog not answering yet", error=str(exc))
            model = None
        if model is not None and model.state == "failed":
            log.warning("the seed model failed to register; not deploying it", model=model.id)
            return
        if model is not None and model.state == "ready":
            break
        await asyncio.sleep(poll_s)
    spec = DeploymentSpec(
        model_id=model.id,
        model_path=model.path,
        served_model=model.id,
        max_model_len=min(settings.seed_max_model_len, model.context_length or settings.seed_max_model_len),
        public=True,
    )
    deployment = await deployments.create(SYSTEM_OWNER, SEED_REQUEST_ID, spec)
    log.info("seed deployment", deployment_id=deployment.id, status=deployment.status.value)
