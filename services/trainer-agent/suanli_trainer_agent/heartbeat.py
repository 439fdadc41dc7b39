"""The heartbeat loop: the node's inventory and attempts on core NATS every interval.

Beats also carry each attempt's last phase, so after a reconnect (a lost report, a restarted
scheduler) the scheduler learns the truth within one interval."""

from __future__ import annotations

import asyncio

from faststream.nats import NatsBroker

from suanli_common.logging import get_logger
from suanli_trainer_agent.agent import NodeAgent
from suanli_trainer_agent.protocol import heartbeat_subject

log = get_logger(__name__)


async def beat_forever(agent: NodeAgent, broker: NatsBroker, interval_s: float) -> None:
    subject = heartbeat_subject(agent.node_id)
    while True:
        try:
            await broker.publish(agent.heartbeat().SerializeToString(), subject=subject)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("heartbeat not sent", exc_info=True)
        await asyncio.sleep(interval_s)
