"""Wire models of /api/v1/gpus."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from suanli_inference_gateway.clients.scheduler import GpuSlots


class NodeGpus(BaseModel):
    """One node's slots of one GPU type."""

    node_id: str
    gpu_type: str
    total: int
    used: int
    free: int
    memory_mb: int = Field(description="Memory of one GPU of this type (0: unknown, as for CPU slots)")

    @classmethod
    def of(cls, slots: GpuSlots) -> NodeGpus:
        return cls(
            node_id=slots.node_id,
            gpu_type=slots.gpu_type,
            total=slots.total,
            used=slots.used,
            free=max(0, slots.total - slots.used),
            memory_mb=slots.memory_mb,
        )


class GpuTypeTotals(BaseModel):
    """One GPU type over the whole cluster."""

    gpu_type: str
    nodes: int
    total: int
    used: int
    free: int


class GpuInventory(BaseModel):
    object: Literal["list"] = "list"
    data: list[NodeGpus] = Field(description="By node and type")
    by_type: list[GpuTypeTotals] = Field(description="By type, summed over the nodes")

    @classmethod
    def of(cls, inventory: list[GpuSlots]) -> GpuInventory:
        data = sorted((NodeGpus.of(s) for s in inventory), key=lambda n: (n.node_id, n.gpu_type))
        totals: dict[str, GpuTypeTotals] = {}
        for node in data:
            kind = totals.setdefault(
                node.gpu_type, GpuTypeTotals(gpu_type=node.gpu_type, nodes=0, total=0, used=0, free=0)
            )
            kind.nodes += 1
            kind.total += node.total
            kind.used += node.used
            kind.free += node.free
        return cls(data=data, by_type=sorted(totals.values(), key=lambda t: t.gpu_type))
