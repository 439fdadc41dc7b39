"""The replica class of a deployment that serves a LoRA adapter on its base: Ray Serve LLM's own
`LLMServer`, whose adapter loader reads the folders the serving controller named instead of
downloading from object storage (see `adapters`). Ray imports this module inside the replicas."""

from __future__ import annotations

import json
import os
from typing import Any

from ray.llm._internal.common.models import global_id_manager
from ray.llm._internal.common.utils.lora_utils import get_lora_id
from ray.llm._internal.serve.core.configs.llm_config import DiskMultiplexConfig, LLMConfig
from ray.llm._internal.serve.core.server.llm_server import LLMServer
from ray.llm._internal.serve.utils.lora_serve_utils import LoraModelLoader

from suanli_inference_gateway.serving.adapters import ADAPTERS_ENV


class AdapterFolderLoader(LoraModelLoader):  # type: ignore[misc]
    """Resolves `base:<name>` to the folder named for `<name>`: nothing to download, nothing cached."""

    async def load_model_from_config(self, lora_model_id: str, llm_config: LLMConfig) -> DiskMultiplexConfig:
        folders: dict[str, str] = json.loads(os.environ.get(ADAPTERS_ENV) or "{}")
        name = get_lora_id(lora_model_id)
        if name not in folders:
            raise ValueError(f"no adapter {name!r} is served by this deployment")
        return DiskMultiplexConfig(
            model_id=lora_model_id,
            max_total_tokens=None,
            local_path=folders[name],
            lora_assigned_int_id=global_id_manager.next(),
        )


class AdapterFolderServer(LLMServer):  # type: ignore[misc]
    # Ray Serve LLM's servers have async constructors: Serve awaits them.
    async def __init__(  # type: ignore[misc]
        self, llm_config: LLMConfig, *, engine_cls: Any = None, model_downloader: Any = None
    ) -> None:
        await super().__init__(
            llm_config, engine_cls=engine_cls, model_downloader=model_downloader or AdapterFolderLoader
        )
