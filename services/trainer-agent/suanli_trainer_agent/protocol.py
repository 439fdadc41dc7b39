"""The agent protocol on NATS, agent side: the subjects it uses (the scheduler's protocol.py
documents the other side), and the machine lines of a job's stdout it routes to METRICS."""

from __future__ import annotations

import json
from dataclasses import dataclass

from suanli_trainer_agent.finetune.reporting import CHECKPOINT_PREFIX, METRICS_PREFIX, RESULT_PREFIX

# Headers of a METRICS message (besides the attempt and node rank a log line carries too).
KIND_HEADER = "Suanli-Kind"
ATTEMPT_HEADER = "Suanli-Attempt"
NODE_RANK_HEADER = "Suanli-Node-Rank"
STREAM_HEADER = "Suanli-Stream"

# `SUANLI_<KIND> {json}` on a job's stdout -> the Suanli-Kind of its METRICS message.
MACHINE_PREFIXES = {METRICS_PREFIX: "metrics", CHECKPOINT_PREFIX: "checkpoint", RESULT_PREFIX: "result"}


def heartbeat_subject(node_id: str) -> str:
    return f"agent.heartbeat.{node_id}"  # core NATS


def command_subject(node_id: str) -> str:
    return f"work.node.{node_id}"  # WORK stream, durable consumer "agent-<node>"


def report_subject(node_id: str) -> str:
    return f"work.report.{node_id}"  # WORK stream, read by the scheduler


def log_subject(job_id: str, node_id: str) -> str:
    return f"logs.job.{job_id}.{node_id}"  # LOGS stream: one line per message


def metrics_subject(job_id: str, node_id: str) -> str:
    # METRICS stream: one JSON object per message, its kind in the Suanli-Kind header.
    return f"metrics.job.{job_id}.{node_id}"


def command_durable(node_id: str) -> str:
    return f"agent-{node_id}"


@dataclass(frozen=True, slots=True)
class MachineLine:
    kind: str  # metrics | checkpoint | result
    body: str  # the JSON object, as the job printed it


def machine_line(line: str) -> MachineLine | None:
    """The kind and body of a `SUANLI_METRICS|CHECKPOINT|RESULT {json}` line; None for any other
    line, and for one whose body is not a JSON object (it stays an ordinary log line)."""
    if not line.startswith("SUANLI_"):
        return None
    for prefix, kind in MACHINE_PREFIXES.items():
        if line.startswith(prefix):
            body = line[len(prefix) :].strip()
            try:
                parsed = json.loads(body)
            except ValueError:
                return None
            return MachineLine(kind, body) if isinstance(parsed, dict) else None
    return None
