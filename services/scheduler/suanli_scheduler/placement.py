"""Placement: which nodes a job goes to, all or nothing. Pure functions over ledger capacities.

A gang takes `nodes` distinct nodes of one GPU type, each with `gpus_per_node` free slots; among
the nodes that fit, the fullest ones are taken first (best fit), so large holes stay for large jobs.
A request may also reserve CPU and memory on each node (instances), and one of no GPU slots takes
nodes by those alone.
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
    cpu_millis: int = 0  # per node
    memory_mb: int = 0
    instance_kind: str = ""  # an instance's run: only nodes that can run this kind


@dataclass(frozen=True, slots=True)
class Placement:
    gpu_type: str
    node_ids: tuple[str, ...]  # index is the node rank


@dataclass(frozen=True, slots=True)
class Unplaceable:
    reason: str


def _can_host(request: PlacementRequest, capacity: Capacity) -> bool:
    return (not request.needs_container or bool(capacity.container_runtime)) and (
        not request.instance_kind or request.instance_kind not in capacity.cannot_run
    )


def _has_room(request: PlacementRequest, capacity: Capacity) -> bool:
    """Whether the node has the CPU and memory the request reserves free now."""
    cpu, memory = capacity.free_cpu_millis, capacity.free_memory_mb
    return (cpu is None or cpu >= request.cpu_millis) and (memory is None or memory >= request.memory_mb)


def _resources(request: PlacementRequest) -> str:
    parts = []
    if request.cpu_millis:
        parts.append(f"{request.cpu_millis / 1000:g} free CPU core(s)")
    if request.memory_mb:
        parts.append(f"{request.memory_mb / 1024:g} GB of free memory")
    return " and ".join(parts)


def _place_without_gpus(request: PlacementRequest, pools: Sequence[Capacity]) -> Placement | Unplaceable:
    nodes = {c.node_id: c for c in pools}  # CPU and memory are the node's, whatever its pools
    if not nodes:
        return Unplaceable(f"no live node can run {request.instance_kind or 'it'}")
    fits = sorted(
        (c for c in nodes.values() if _has_room(request, c)),
        key=lambda c: (c.free_cpu_millis or 0, c.free_memory_mb or 0, c.node_id),
    )
    if len(fits) >= request.nodes:
        return Placement("", tuple(c.node_id for c in fits[: request.nodes]))
    return Unplaceable(
        f"waiting for capacity: needs {request.nodes} node(s) with {_resources(request) or 'room'}; "
        f"{len(fits)} such node(s) now"
    )


def place(request: PlacementRequest, capacities: Sequence[Capacity]) -> Placement | Unplaceable:
    pools = [c for c in capacities if _can_host(request, c)]
    if request.gpus_per_node == 0:
        return _place_without_gpus(request, pools)
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
        fits = [
            c
            for c in pools
            if c.gpu_type == gpu_type and c.free >= request.gpus_per_node and _has_room(request, c)
        ]
        fits.sort(key=lambda c: (c.free, c.node_id))
        chosen: list[str] = []
        for c in fits:
            if c.node_id not in chosen:
                chosen.append(c.node_id)
            if len(chosen) == request.nodes:
                return Placement(gpu_type, tuple(chosen))
        best_free = max(best_free, len(chosen))
    kind = request.gpu_type or "any type"
    resources = _resources(request)
    return Unplaceable(
        f"waiting for capacity: needs {request.nodes} node(s) with {request.gpus_per_node} free {kind} "
        f"slot(s){f' and {resources}' if resources else ''} each; {best_free} such node(s) now"
    )


def check_feasible(request: PlacementRequest, nodes: Iterable[NodeInventory]) -> None:
    """Refuses at submit what no known node could ever run, so it does not wait forever."""
    nodes = list(nodes)
    all_types = sorted({p.gpu_type for n in nodes for p in n.pools})
    if (
        request.gpus_per_node
        and request.gpu_type
        and not any(same_type(t, request.gpu_type) for t in all_types)
    ):
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
    candidates = _able_to_run(request, candidates)
    if request.cpu_millis or request.memory_mb:
        candidates = _big_enough(request, candidates)
    if request.gpus_per_node == 0:
        if len(candidates) >= request.nodes:
            return
        raise InvalidRequest(
            f"nodes={request.nodes} is more than the cluster has ({len(candidates)} that fit)"
            if candidates
            else "no node has joined the cluster yet: start a trainer agent",
            param="nodes" if candidates else None,
        )
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


def _able_to_run(request: PlacementRequest, nodes: list[NodeInventory]) -> list[NodeInventory]:
    """The nodes that can run the request's instance kind; refuses, with each node's reason, when
    none can."""
    kind = request.instance_kind
    if not kind:
        return nodes
    able = [n for n in nodes if n.cannot_run(kind) is None]
    if nodes and not able:
        reasons = "; ".join(f"{n.node_id}: {n.cannot_run(kind)}" for n in nodes)
        raise InvalidRequest(f"no node can run {kind} instances ({reasons})", param="kind")
    return able


def _big_enough(request: PlacementRequest, nodes: list[NodeInventory]) -> list[NodeInventory]:
    """The nodes whose declared CPU and memory (if any) hold the request's; refuses when none do."""
    cpu_ok = [n for n in nodes if not n.cpu_millis or n.cpu_millis >= request.cpu_millis]
    roomy = [n for n in cpu_ok if not n.memory_mb or n.memory_mb >= request.memory_mb]
    if roomy or not nodes:
        return roomy
    if not cpu_ok:
        largest = max(n.cpu_millis for n in nodes) / 1000
        raise InvalidRequest(
            f"cpu={request.cpu_millis / 1000:g} is more than any node has (largest: {largest:g} cores)",
            param="cpu",
        )
    largest_gb = max(n.memory_mb for n in cpu_ok) / 1024
    raise InvalidRequest(
        f"memory_gb={request.memory_mb / 1024:g} is more than any node with that much CPU has "
        f"(largest: {largest_gb:.1f} GB)",
        param="memory_gb",
    )
