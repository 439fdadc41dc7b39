"""LoRA adapters from the platform's own storage, served by vLLM's LoRA support under Ray Serve LLM.

Ray Serve LLM multiplexes adapters (`base:adapter` in a request) but fetches them from object
storage only (its `dynamic_lora_loading_path` must be s3://, gs:// or azure://). The platform keeps
adapters in a folder (embedded) or a mounted volume, so the replica here is Ray Serve LLM's own
`LLMServer` with its adapter loader swapped for one that reads the folders the serving controller
named (`LLMServer` takes the loader as a constructor argument for this). The rest is Ray's and
vLLM's: the adapter is loaded into the engine on its first request and applied per request.

This module holds what the serving controller needs; `adapter_server` the replica's classes."""

from __future__ import annotations

import json
from pathlib import Path

# Adapter name -> its folder, set by the serving controller in the replica's environment.
ADAPTERS_ENV = "SUANLI_SERVE_ADAPTERS"
# Ray imports the replica class by name (in `adapter_server`, which needs Ray to import).
SERVER_CLASS = "suanli_inference_gateway.serving.adapter_server.AdapterFolderServer"
# The ranks vLLM compiles LoRA kernels for (`vllm.config.lora.MaxLoRARanks`).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def adapter_rank(folder: str) -> int:
    """The rank vLLM must reserve for the adapter in `folder`: its own `r` (or the largest of its
    per-module ranks), rounded up to a rank vLLM supports."""
    config = json.loads((Path(folder) / "adapter_config.json").read_text())
    rank = max([int(config.get("r") or 8), *(int(r) for r in (config.get("rank_pattern") or {}).values())])
    supported = [r for r in VLLM_LORA_RANKS if r >= rank]
    if not supported:
        raise ValueError(f"the adapter's LoRA rank {rank} is over vLLM's largest, {VLLM_LORA_RANKS[-1]}")
    return supported[0]


def adapter_env(adapters: dict[str, str]) -> dict[str, str]:
    return {ADAPTERS_ENV: json.dumps(adapters, sort_keys=True)}
