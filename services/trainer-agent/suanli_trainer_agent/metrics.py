"""The trainer agent's Prometheus metrics, read when scraped from the heartbeat the agent would send
now: the same view of its slots and attempts the scheduler gets."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from suanli_trainer_agent.agent import TERMINAL, NodeAgent


def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily(
            "suanli_agent_slots",
            "This node's GPU slots by type: used (held by a live attempt) or free",
            labels=["gpu_type", "state"],
        ),
        GaugeMetricFamily(
            "suanli_agent_running_jobs",
            "Attempts of jobs live on this node (preparing or running)",
        ),
    )


class AgentCollector:
    """A prometheus_client collector over a `NodeAgent`."""

    def __init__(self, agent: NodeAgent) -> None:
        self._agent = agent

    def describe(self) -> Iterator[Metric]:
        yield from _families()

    def collect(self) -> Iterator[Metric]:
        slots, running = _families()
        beat = self._agent.heartbeat()
        for pool in beat.gpus:
            slots.add_metric([pool.gpu_type, "used"], pool.used)
            slots.add_metric([pool.gpu_type, "free"], max(pool.total - pool.used, 0))
        running.add_metric([], sum(1 for attempt in beat.attempts if attempt.phase not in TERMINAL))
        yield from (slots, running)
