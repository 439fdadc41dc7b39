"""What this node offers: GPUs found by NVML, or else the slots the operator declared."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from suanli_common.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SlotPool:
    gpu_type: str
    count: int
    memory_mb: int = 0
    device_ids: tuple[str, ...] = ()  # CUDA_VISIBLE_DEVICES values; empty for CPU slots


def parse_slots(value: str) -> list[SlotPool]:
    """'cpu:2' or 'A100-80G:4,cpu:1' -> pools; a bare type means one slot."""
    pools = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        kind, _, count = item.rpartition(":") if ":" in item else (item, "", "1")
        try:
            n = int(count)
        except ValueError:
            raise ValueError(f"bad slot declaration {item!r}: expected TYPE:COUNT") from None
        if not kind or n <= 0:
            raise ValueError(f"bad slot declaration {item!r}: expected TYPE:COUNT with COUNT >= 1")
        pools.append(SlotPool(kind, n))
    return pools


def nvml_pools() -> list[SlotPool]:
    """GPUs by type through NVML; [] where there is no driver or no GPU."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver: a CPU node
        return []
    try:
        by_type: dict[str, list[tuple[str, int]]] = {}
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else str(name)
            memory_mb = int(pynvml.nvmlDeviceGetMemoryInfo(handle).total) // (1024 * 1024)
            kind = name.replace("NVIDIA ", "").replace(" ", "-")
            by_type.setdefault(kind, []).append((str(index), memory_mb))
        return [
            SlotPool(kind, len(devices), min(m for _, m in devices), tuple(i for i, _ in devices))
            for kind, devices in sorted(by_type.items())
        ]
    finally:
        pynvml.nvmlShutdown()


# Without GPUs, two CPU slots: the seed chat deployment holds one while it lives, and a fine-tune
# or job can still run beside it.
DEFAULT_CPU_SLOTS = "cpu:2"


def discover(declared: str) -> list[SlotPool]:
    pools = nvml_pools()
    if pools:
        log.info("GPUs found", pools=[(p.gpu_type, p.count) for p in pools])
        return pools
    pools = parse_slots(declared or DEFAULT_CPU_SLOTS)
    log.info("no GPU found; declaring configured slots", pools=[(p.gpu_type, p.count) for p in pools])
    return pools


def node_resources(cpus: float, memory_gb: float) -> tuple[int, int]:
    """(CPU in thousandths of a core, memory in MB) the node declares for instances to reserve: the
    configured amounts, else what this process may use of the machine."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cpu_millis = round(cpus * 1000) if cpus else usable * 1000
    if memory_gb:
        memory_mb = round(memory_gb * 1024)
    else:
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    return cpu_millis, memory_mb


def container_runtime(configured: str | None) -> str:
    if configured is not None:
        return configured
    for name in ("docker", "podman"):
        if shutil.which(name):
            return name
    return ""
