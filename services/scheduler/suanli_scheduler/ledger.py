"""The GPU slot ledger: what every node has (fed by heartbeats) and which placements hold it.

Free slots of a pool are its total minus the larger of what the scheduler has given out and what
the agent says is busy: an agent still stopping a superseded attempt keeps those slots until it
is done, so a slot is never promised twice.
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


@dataclass(frozen=True, slots=True)
class Claim:
    lease_id: str
    owner_id: str
    gpu_type: str
    slots: int
    port: int = 0


@dataclass(frozen=True, slots=True)
class Capacity:
    """One pool of one node as placement sees it."""

    node_id: str
    gpu_type: str
    total: int
    free: int
    container_runtime: str


@dataclass(slots=True)
class _Node:
    inventory: NodeInventory
    last_seen: float
    alive: bool = True
    claims: dict[str, Claim] = field(default_factory=dict)


def same_type(a: str, b: str) -> bool:
    return a.strip().lower() == b.strip().lower()


class GpuSlotLedger:
    def __init__(self) -> None:
        self._nodes: dict[str, _Node] = {}

    def observe(self, inventory: NodeInventory, now: float) -> bool:
        """Records a heartbeat; True when the node is new, came back or its inventory changed
        (the caller persists it and runs a placement pass)."""
        node = self._nodes.get(inventory.node_id)
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
        return lost

    def capacities(self) -> list[Capacity]:
        result = []
        for node_id, node in self._nodes.items():
            if not node.alive:
                continue
            for pool in node.inventory.pools:
                claimed = sum(c.slots for c in node.claims.values() if same_type(c.gpu_type, pool.gpu_type))
                free = pool.total - max(claimed, pool.reported_used)
                result.append(
                    Capacity(
                        node_id, pool.gpu_type, pool.total, max(free, 0), node.inventory.container_runtime
                    )
                )
        return result

    def claim(self, node_id: str, claim: Claim) -> None:
        node = self._nodes.get(node_id)
        if node is None:  # restored from the database before the node's first beat
            node = self._nodes[node_id] = _Node(NodeInventory(node_id, "", ()), last_seen=0.0, alive=False)
        node.claims[claim.lease_id] = claim

    def release(self, lease_id: str) -> None:
        for node in self._nodes.values():
            node.claims.pop(lease_id, None)

    def used_by(self, owner_id: str, gpu_type: str | None = None) -> int:
        return sum(
            c.slots
            for node in self._nodes.values()
            for c in node.claims.values()
            if c.owner_id == owner_id and (gpu_type is None or same_type(c.gpu_type, gpu_type))
        )

    def allocate_port(self, node_id: str) -> int:
        """A rendezvous port on the node's address that no live placement on that address holds."""
        node = self._nodes[node_id]
        address = node.inventory.address
        taken = {
            c.port
            for other in self._nodes.values()
            if other.inventory.address == address
            for c in other.claims.values()
        }
        low, high = node.inventory.port_range
        for port in range(low, high + 1):
            if port not in taken:
                return port
        raise RuntimeError(f"no free rendezvous port on {address}")

    def inventory(self) -> list[tuple[NodeInventory, bool, dict[str, int]]]:
        """Per node: its inventory, whether it is alive, and used slots per GPU type."""
        out = []
        for node in self._nodes.values():
            used: dict[str, int] = {}
            for pool in node.inventory.pools:
                claimed = sum(c.slots for c in node.claims.values() if same_type(c.gpu_type, pool.gpu_type))
                used[pool.gpu_type] = max(claimed, pool.reported_used)
            out.append((node.inventory, node.alive, used))
        return out


def _shape(inventory: NodeInventory) -> tuple[object, ...]:
    return (
        inventory.address,
        tuple((p.gpu_type, p.total, p.memory_mb) for p in inventory.pools),
        inventory.container_runtime,
        inventory.port_range,
        inventory.instance_id,
    )
