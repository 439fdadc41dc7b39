"""The agent protocol on NATS, agent side: the subjects it uses (the scheduler's protocol.py
documents the other side)."""

from __future__ import annotations


def heartbeat_subject(node_id: str) -> str:
    return f"agent.heartbeat.{node_id}"  # core NATS


def command_subject(node_id: str) -> str:
    return f"work.node.{node_id}"  # WORK stream, durable consumer "agent-<node>"


def report_subject(node_id: str) -> str:
    return f"work.report.{node_id}"  # WORK stream, read by the scheduler


def log_subject(job_id: str, node_id: str) -> str:
    return f"logs.job.{job_id}.{node_id}"  # LOGS stream: one line per message


def command_durable(node_id: str) -> str:
    return f"agent-{node_id}"
