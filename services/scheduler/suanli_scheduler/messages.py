"""What the scheduler and its agents tell each other, as domain types: offers and stops to a
node, heartbeats and reports from one. `protocol` maps them to and from the wire."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from suanli_scheduler.domain import JobSpec, JobStatus
from suanli_scheduler.ledger import NodeInventory


@dataclass(frozen=True, slots=True)
class Offer:
    job_id: str
    attempt: int
    lease_id: str
    owner_id: str
    spec: JobSpec
    node_rank: int
    nnodes: int
    master_addr: str
    master_port: int
    gpu_type: str
    resume: bool
    max_runtime_s: float
    traceparent: str = ""  # the submitter's trace, which the offer and the agent's run continue


@dataclass(frozen=True, slots=True)
class Stop:
    job_id: str
    attempt: int
    reason: JobStatus
    message: str
    delete_storage: bool = False  # an instance was deleted: its agent removes its storage after it


@dataclass(frozen=True, slots=True)
class AttemptSeen:
    job_id: str
    attempt: int
    lease_id: str
    phase: JobStatus
    exit_code: int = 0
    message: str = ""
    result_json: str = ""  # a heartbeat may end a job before its report arrives: it carries the result too
    endpoint: str = ""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    inventory: NodeInventory
    attempts: tuple[AttemptSeen, ...] = ()


@dataclass(frozen=True, slots=True)
class AttemptReport:
    node_id: str
    job_id: str
    attempt: int
    lease_id: str
    phase: JobStatus
    exit_code: int = 0
    message: str = ""
    progress: float = 0.0
    result_json: str = ""  # on success: the job's <output>/result.json, as the agent read it
    endpoint: str = ""  # an instance's run: host:port its server answers on
    traceparent: str = ""  # the trace the agent sent it in (the job's), which its facts continue


class NodeCommands(Protocol):
    """Where offers and stops go (JetStream `work.node.<node>` in production)."""

    async def send(self, commands: Sequence[tuple[str, Offer | Stop]]) -> list[BaseException | None]:
        """Sends (node id, command) pairs together; per command, None once the stream holds it."""
        ...
