"""Placement: which nodes a job goes to, all or nothing. Pure functions over ledger capacities.

A gang takes `nodes` distinct nodes of one GPU type, each with `gpus_per_node` free slots; among
the nodes that fit, the fullest ones are taken first (best fit), so large holes stay for large jobs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from suanli_common.errors import InvalidRequest
from suanli_scheduler.ledger import Capacity, NodeInventory, same_type


@dataclass(frozen=True, slots=True)
class PlacementRequest:
    nodes: int
    gpus_per_node: int
    gpu_type: str = ""  # "": any one type
    needs_container: bool = False


@dataclass(frozen=True, slots=True)
class Placement:
    gpu_type: str
    node_ids: tuple[str, ...]  # index is the node rank


@dataclass(frozen=True, slots=True)
class Unplaceable:
    reason: str


def place(request: PlacementRequest, capacities: Sequence[Capacity]) -> Placement | Unplaceable:
    pools = [c for c in capacities if not request.needs_container or c.container_runtime]
    types = sorted(
        {c.gpu_type for c in pools if not request.gpu_type or same_type(c.gpu_type, request.gpu_type)}
    )
    if not types:
        wanted = request.gpu_type or "GPU"
        return Unplaceable(
            f"no live node has {wanted} slots"
            + (" and a container runtime" if request.needs_container else "")
        )
    best_free = 0
    for gpu_type in types:
        fits = [c for c in pools if c.gpu_type == gpu_type and c.free >= request.gpus_per_node]
        fits.sort(key=lambda c: (c.free, c.node_id))
        chosen: list[str] = []
        for c in fits:
            if c.node_id not in chosen:
                chosen.append(c.node_id)
            if len(chosen) == request.nodes:
                return Placement(gpu_type, tuple(chosen))
        best_free = max(best_free, len(chosen))
    kind = request.gpu_type or "any type"
    return Unplaceable(
        f"waiting for capacity: needs {request.nodes} node(s) with {request.gpus_per_node} free {kind} "
        f"slot(s) each; {best_free} such node(s) now"
    )


def check_feasible(request: PlacementRequest, nodes: Iterable[NodeInventory]) -> None:
    """Refuses at submit what no known node could ever run, so it does not wait forever."""
    nodes = list(nodes)
    all_types = sorted({p.gpu_type for n in nodes for p in n.pools})
    if request.gpu_type and not any(same_type(t, request.gpu_type) for t in all_types):
        known = ", ".join(all_types) or "none yet"
        raise InvalidRequest(
            f"unknown gpu_type {request.gpu_type!r}; the cluster has: {known}", param="gpu_type"
        )
    if request.needs_container and not any(n.container_runtime for n in nodes):
        raise InvalidRequest(
            "image jobs need docker or podman on a node, and no node has one; submit a command instead",
            param="image",
        )
    candidates = [n for n in nodes if not request.needs_container or n.container_runtime]
    matching = [
        p
        for n in candidates
        for p in n.pools
        if not request.gpu_type or same_type(p.gpu_type, request.gpu_type)
    ]
    big_enough: dict[str, int] = {}
    for pool in matching:
        if pool.total >= request.gpus_per_node:
            big_enough[pool.gpu_type] = big_enough.get(pool.gpu_type, 0) + 1
    if any(count >= request.nodes for count in big_enough.values()):
        return
    biggest = max((p.total for p in matching), default=0)
    if biggest < request.gpus_per_node:
        raise InvalidRequest(
            f"gpus_per_node={request.gpus_per_node} is more than any node has (largest: {biggest})",
            param="gpus_per_node",
        )
    raise InvalidRequest(
        f"nodes={request.nodes} is more than the cluster has with {request.gpus_per_node} free slot(s) "
        f"of one type each ({max(big_enough.values(), default=0)})",
        param="nodes",
    )
