"""The GPU slot ledger: what every node has (fed by heartbeats) and which placements hold it.

Free slots of a pool are its total minus the larger of what the scheduler has given out and what
the agent says is busy: an agent still stopping a superseded attempt keeps those slots until it
is done, so a slot is never promised twice.

Beside its slots, a node may declare CPU (in thousandths of a core) and memory; claims that
reserve them (instances) are counted against those, per node. A node that declares none is not
limited by them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SlotPool:
    gpu_type: str
    total: int
    memory_mb: int = 0
    reported_used: int = 0


@dataclass(frozen=True, slots=True)
class NodeInventory:
    node_id: str
    address: str
    pools: tuple[SlotPool, ...]
    container_runtime: str = ""
    port_range: tuple[int, int] = (29500, 29999)
    instance_id: str = ""
    cpu_millis: int = 0  # 0: not declared
    memory_mb: int = 0
    # Instance kinds the node cannot run, with the agent's reason: ((kind, reason), ...).
    unavailable_kinds: tuple[tuple[str, str], ...] = ()

    def cannot_run(self, kind: str) -> str | None:
        """Why this node cannot run instances of `kind`; None when it can."""
        return dict(self.unavailable_kinds).get(kind)


@dataclass(frozen=True, slots=True)
class Claim:
    lease_id: str
    owner_id: str
    gpu_type: str
    slots: int
    port: int = 0
    cpu_millis: int = 0
    memory_mb: int = 0


@dataclass(frozen=True, slots=True)
class Capacity:
    """One pool of one node as placement sees it."""

    node_id: str
    gpu_type: str
    total: int
    free: int
    container_runtime: str
    # The node's free CPU and memory (None: it declares none, so they do not limit it), and the
    # instance kinds it cannot run.
    free_cpu_millis: int | None = None
    free_memory_mb: int | None = None
    cannot_run: frozenset[str] = frozenset()


@dataclass(slots=True)
class _Node:
    inventory: NodeInventory
    last_seen: float
    alive: bool = True
    claims: dict[str, Claim] = field(default_factory=dict)
    # Claimed slots per normalised GPU type, kept with `claims`: a placement pass reads every
    # node's free slots once per job, and summing every claim each time grew with the cluster.
    claimed: dict[str, int] = field(default_factory=dict)
    ports: dict[int, int] = field(default_factory=dict)  # rendezvous port -> claims holding it
    cpu_millis: int = 0  # claimed
    memory_mb: int = 0
    capacities: tuple[Capacity, ...] | None = None  # as placement sees the node now; None: stale


def type_key(gpu_type: str) -> str:
    return gpu_type.strip().lower()


def same_type(a: str, b: str) -> bool:
    return type_key(a) == type_key(b)


class GpuSlotLedger:
    def __init__(self) -> None:
        self._nodes: dict[str, _Node] = {}
        self._lease_nodes: dict[str, list[str]] = {}  # lease id -> nodes holding a claim of it
        self._owner_used: dict[str, dict[str, int]] = {}  # owner -> type key -> claimed slots
        # The live capacities, kept until something changes: a placement pass asks once per
        # waiting job, and rebuilding them each time made a pass over a long queue cost
        # (jobs x pools) objects.
        self._capacities: list[Capacity] | None = None

    def observe(self, inventory: NodeInventory, now: float) -> bool:
        """Records a heartbeat; True when the node is new, came back or its inventory changed
        (the caller persists it and runs a placement pass)."""
        self._capacities = None
        node = self._nodes.get(inventory.node_id)
        if node is not None:
            node.capacities = None
        if node is None:
            self._nodes[inventory.node_id] = _Node(inventory=inventory, last_seen=now)
            return True
        changed = not node.alive or _shape(node.inventory) != _shape(inventory)
        freed = sum(p.reported_used for p in node.inventory.pools) > sum(
            p.reported_used for p in inventory.pools
        )
        node.inventory, node.last_seen, node.alive = inventory, now, True
        return changed or freed

    def would_change(self, inventory: NodeInventory) -> bool:
        """Whether the node is new, lost, or its inventory shape differs (worth persisting)."""
        node = self._nodes.get(inventory.node_id)
        return node is None or not node.alive or _shape(node.inventory) != _shape(inventory)

    def known(self, node_id: str) -> NodeInventory | None:
        node = self._nodes.get(node_id)
        return node.inventory if node else None

    def is_alive(self, node_id: str) -> bool:
        node = self._nodes.get(node_id)
        return bool(node and node.alive)

    def mark_lost(self, now: float, ttl: float) -> list[str]:
        """Marks nodes silent for longer than `ttl` as lost (no new placements); returns them."""
        lost = []
        for node_id, node in self._nodes.items():
            if node.alive and now - node.last_seen > ttl:
                node.alive = False
                lost.append(node_id)
        if lost:
            self._capacities = None
        return lost

    def capacities(self) -> list[Capacity]:
        if self._capacities is None:
            self._capacities = self._build_capacities()
        return list(self._capacities)  # a copy: callers filter and sort what they get

    def _build_capacities(self) -> list[Capacity]:
        # Per node too: a claim changes one node, and a pass that places a job after each claim
        # rebuilds only that node's entries.
        result: list[Capacity] = []
        for node in self._nodes.values():
            if node.alive:
                if node.capacities is None:
                    node.capacities = _node_capacities(node)
                result.extend(node.capacities)
        return result

    def claim(self, node_id: str, claim: Claim) -> None:
        node = self._nodes.get(node_id)
        if node is None:  # restored from the database before the node's first beat
            node = self._nodes[node_id] = _Node(NodeInventory(node_id, "", ()), last_seen=0.0, alive=False)
        old = node.claims.get(claim.lease_id)
        if old is not None:  # the same claim again: count it once
            self._count(node, old, -1)
        else:
            self._lease_nodes.setdefault(claim.lease_id, []).append(node_id)
        node.claims[claim.lease_id] = claim
        self._count(node, claim, +1)

    def release(self, lease_id: str) -> None:
        for node_id in self._lease_nodes.pop(lease_id, ()):
            node = self._nodes.get(node_id)
            claim = node.claims.pop(lease_id, None) if node else None
            if node is not None and claim is not None:
                self._count(node, claim, -1)

    def _count(self, node: _Node, claim: Claim, sign: int) -> None:
        self._capacities = node.capacities = None
        key = type_key(claim.gpu_type)
        node.claimed[key] = node.claimed.get(key, 0) + sign * claim.slots
        if claim.port:
            node.ports[claim.port] = node.ports.get(claim.port, 0) + sign
            if not node.ports[claim.port]:
                del node.ports[claim.port]
        node.cpu_millis += sign * claim.cpu_millis
        node.memory_mb += sign * claim.memory_mb
        owned = self._owner_used.setdefault(claim.owner_id, {})
        owned[key] = owned.get(key, 0) + sign * claim.slots

    def used_by(self, owner_id: str, gpu_type: str | None = None) -> int:
        owned = self._owner_used.get(owner_id, {})
        return sum(owned.values()) if gpu_type is None else owned.get(type_key(gpu_type), 0)

    def inventories(self) -> list[NodeInventory]:
        """Every node ever seen (restored from the database at start), alive or not."""
        return [node.inventory for node in self._nodes.values()]

    def allocate_port(self, node_id: str) -> int | None:
        """A rendezvous port on the node's address that no live placement on that address holds;
        None when every port of the node's range is taken (the job waits)."""
        node = self._nodes[node_id]
        address = node.inventory.address
        taken: set[int] = set(node.ports)
        for other in self._nodes.values():
            if other.ports and other is not node and other.inventory.address == address:
                taken.update(other.ports)
        low, high = node.inventory.port_range
        for port in range(low, high + 1):
            if port not in taken:
                return port
        return None

    def inventory(self) -> list[tuple[NodeInventory, bool, dict[str, int]]]:
        """Per node: its inventory, whether it is alive, and used slots per GPU type."""
        out = []
        for node in self._nodes.values():
            used: dict[str, int] = {}
            for pool in node.inventory.pools:
                claimed = node.claimed.get(type_key(pool.gpu_type), 0)
                used[pool.gpu_type] = max(claimed, pool.reported_used)
            out.append((node.inventory, node.alive, used))
        return out


def _node_capacities(node: _Node) -> tuple[Capacity, ...]:
    inventory = node.inventory
    free_cpu = inventory.cpu_millis - node.cpu_millis if inventory.cpu_millis else None
    free_memory = inventory.memory_mb - node.memory_mb if inventory.memory_mb else None
    cannot_run = frozenset(kind for kind, _ in inventory.unavailable_kinds)
    result = []
    for pool in inventory.pools:
        claimed = node.claimed.get(type_key(pool.gpu_type), 0)
        free = pool.total - max(claimed, pool.reported_used)
        result.append(
            Capacity(
                inventory.node_id,
                pool.gpu_type,
                pool.total,
                max(free, 0),
                inventory.container_runtime,
                free_cpu,
                free_memory,
                cannot_run,
            )
        )
    return tuple(result)


def _shape(inventory: NodeInventory) -> tuple[object, ...]:
    return (
        inventory.address,
        tuple((p.gpu_type, p.total, p.memory_mb) for p in inventory.pools),
        inventory.container_runtime,
        inventory.port_range,
        inventory.instance_id,
        inventory.cpu_millis,
        inventory.memory_mb,
        inventory.unavailable_kinds,
    )
