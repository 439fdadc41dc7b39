"""The node agent: takes offers and stops for this node, runs each attempt (stage, run, report),
and says in every heartbeat what it holds, so the scheduler can fence off what it no longer gives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from faststream.nats import NatsBroker
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from suanli_common.bus import LOGS, METRICS, WORK
from suanli_common.ids import new_id
from suanli_common.logging import get_logger
from suanli_common.proto.suanli.v1 import scheduler_pb2 as pb
from suanli_common.telemetry import untraced
from suanli_trainer_agent.discovery import SlotPool, node_resources
from suanli_trainer_agent.instances import InstanceServer, instance_storage, prepare_server, remove_storage
from suanli_trainer_agent.instances import unavailable_kinds as instance_kinds_unavailable
from suanli_trainer_agent.mpi.wire import TOKEN_ENV as MPI_TOKEN_ENV
from suanli_trainer_agent.protocol import (
    ATTEMPT_HEADER,
    KIND_HEADER,
    NODE_RANK_HEADER,
    STREAM_HEADER,
    log_subject,
    machine_line,
    metrics_subject,
    report_subject,
)
from suanli_trainer_agent.runner import JobProcess, Launch, command_argv
from suanli_trainer_agent.settings import AgentSettings
from suanli_trainer_agent.staging import StagingError, stage

log = get_logger(__name__)
_tracer = trace.get_tracer("suanli.trainer_agent")

TERMINAL = {pb.JOB_STATUS_SUCCEEDED, pb.JOB_STATUS_FAILED, pb.JOB_STATUS_CANCELLED, pb.JOB_STATUS_TIMED_OUT}
RESULT_FILE = "result.json"
RESULT_LIMIT = 64 * 1024  # JobReport.result_json / Job.result_json carry at most this much


@dataclass(slots=True)
class Attempt:
    offer: pb.WorkOffer
    slots: int
    devices: tuple[str, ...]
    phase: int = pb.JOB_STATUS_PREPARING
    exit_code: int = 0
    message: str = ""
    progress: float = 0.0
    task: asyncio.Task[None] | None = None
    process: JobProcess | None = None
    stop_reason: int | None = None
    stop_message: str = ""
    finished_at: float | None = None
    tail: list[str] = field(default_factory=list)
    result_json: str = ""
    endpoint: str = ""  # an instance's server: host:port, once it answers
    delete_storage: bool = False  # an instance deleted while it ran: remove its storage at the end

    @property
    def live(self) -> bool:
        return self.phase not in TERMINAL


class NodeAgent:
    def __init__(
        self, settings: AgentSettings, broker: NatsBroker, pools: list[SlotPool], container_runtime: str
    ) -> None:
        self.settings = settings
        self.node_id = settings.node_id
        self._broker = broker
        self._pools = pools
        self._runtime = container_runtime
        self.instance_id = new_id("agent")
        self.attempts: dict[str, Attempt] = {}
        self._cpu_millis, self._memory_mb = node_resources(settings.agent_cpus, settings.agent_memory_gb)
        self._unavailable_kinds = instance_kinds_unavailable(settings)

    # ---- commands ------------------------------------------------------------------------------

    async def handle(self, command: pb.NodeCommand) -> None:
        kind = command.WhichOneof("command")
        if kind == "offer":
            await self._on_offer(command.offer)
        elif kind == "stop":
            self._on_stop(command.stop)

    async def _on_offer(self, offer: pb.WorkOffer) -> None:
        held = self.attempts.get(offer.job_id)
        if held is not None:
            if held.offer.attempt > offer.attempt or held.offer.lease_id == offer.lease_id:
                return  # a stale or redelivered offer
            if held.live:
                await self._stop_attempt(held, pb.JOB_STATUS_CANCELLED, "superseded by a newer attempt")
        devices = self._free_devices(offer.gpu_type, offer.spec.gpus_per_node)
        attempt = Attempt(offer=offer, slots=offer.spec.gpus_per_node, devices=devices or ())
        self.attempts[offer.job_id] = attempt
        if devices is None:
            # The scheduler's ledger and this node disagree (a slot still held): give it back.
            attempt.phase, attempt.message = (
                pb.JOB_STATUS_CANCELLED,
                f"no {offer.gpu_type} slots free on this node",
            )
            attempt.finished_at = time.monotonic()
            await self._report(attempt)
            return
        await self._report(attempt)  # preparing: the acknowledgement of the offer
        attempt.task = asyncio.create_task(self._traced_run(attempt))

    def _on_stop(self, stop: pb.StopWork) -> None:
        held = self.attempts.get(stop.job_id)
        if held is not None and stop.delete_storage and held.offer.spec.HasField("instance"):
            if not held.live:  # it ended before the stop came: nothing more will write there
                storage = instance_storage(self.settings, held.offer.spec.instance.instance_id)
                asyncio.get_running_loop().create_task(asyncio.to_thread(remove_storage, storage))
            held.delete_storage = True
        if held is None or not held.live or (stop.attempt and stop.attempt != held.offer.attempt):
            return
        reason = stop.reason if stop.reason in TERMINAL else pb.JOB_STATUS_CANCELLED
        # Not awaited: a stop waits out the grace period, and other commands must not queue behind it.
        asyncio.get_running_loop().create_task(self._stop_attempt(held, reason, stop.message))

    async def _stop_attempt(self, attempt: Attempt, reason: int, message: str) -> None:
        attempt.stop_reason, attempt.stop_message = reason, message
        if attempt.process is not None:
            await attempt.process.stop(self.settings.stop_grace_s)
        elif attempt.task is not None:
            attempt.task.cancel()
        if attempt.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await attempt.task

    def _free_devices(self, gpu_type: str, count: int) -> tuple[str, ...] | None:
        if count == 0:  # an instance on CPU and memory alone
            return ()
        pool = next((p for p in self._pools if p.gpu_type.lower() == gpu_type.lower()), None)
        if pool is None:
            return None
        busy = [a for a in self.attempts.values() if a.live and a.offer.gpu_type.lower() == gpu_type.lower()]
        if pool.count - sum(a.slots for a in busy) < count:
            return None
        taken = {d for a in busy for d in a.devices}
        return tuple(d for d in pool.device_ids if d not in taken)[:count]

    # ---- one attempt -----------------------------------------------------------------------------

    async def _traced_run(self, attempt: Attempt) -> None:
        """The attempt as one span of the submitter's trace (the offer carried its context)."""
        offer = attempt.offer
        attributes = {
            "suanli.job.id": offer.job_id,
            "suanli.job.attempt": offer.attempt,
            "suanli.job.type": pb.JobType.Name(offer.spec.job_type),
            "suanli.node.id": self.node_id,
            "suanli.gpu.type": offer.gpu_type,
            "suanli.gpu.count": attempt.slots,
            "enduser.id": offer.owner_id,
        }
        with _tracer.start_as_current_span("job.run", attributes=attributes) as span:
            await self._run(attempt)
            span.set_attributes(
                {
                    "suanli.job.status": pb.JobStatus.Name(attempt.phase),
                    "suanli.job.exit_code": attempt.exit_code,
                }
            )
            if attempt.phase in (pb.JOB_STATUS_FAILED, pb.JOB_STATUS_TIMED_OUT):
                span.set_status(StatusCode.ERROR, attempt.message or pb.JobStatus.Name(attempt.phase))

    async def _run(self, attempt: Attempt) -> None:
        offer = attempt.offer
        try:
            volume = self.settings.resolved_volumes_dir / offer.job_id

            async def progress(value: float, message: str) -> None:
                attempt.progress, attempt.message = value, message
                await self._report(attempt)

            server: InstanceServer | None = None
            if offer.spec.HasField("instance"):
                server = await prepare_server(
                    self.settings, offer.spec, attempt.devices, self._base_env(), progress
                )
                env, argv, cwd, output = server.env, server.argv, server.workspace, None
            else:
                paths = await stage(
                    volume,
                    ckpt_path=offer.spec.ckpt_path,
                    model_save_path=offer.spec.model_save_path,
                    model_path=offer.spec.model_path,
                    dataset_path=offer.spec.dataset_path,
                    volume_gb=offer.spec.volume_gb,
                    on_progress=progress,
                )
                env = self._job_env(
                    attempt, paths.volume, paths.ckpt, paths.output, paths.model, paths.dataset
                )
                argv = self._argv(attempt, paths.volume, env)
                cwd, output = paths.volume, paths.output
            log_file = await asyncio.to_thread(self._open_log, offer)

            async def on_line(stream: str, line: str) -> None:
                with untraced():  # hundreds of lines: their publishes would bury the job's trace
                    await relay_line(stream, line)

            async def relay_line(stream: str, line: str) -> None:
                log_file.write(f"{stream}: {line}\n")
                log_file.flush()
                # Each line is published (and acknowledged) before the next one is read, so every
                # line and metric of an attempt is in JetStream before its final report.
                machine = machine_line(line) if stream == "stdout" else None
                if machine is not None:
                    # The runner prints a human line beside each machine line; the log gets only that one.
                    await self._broker.publish(
                        machine.body.encode(),
                        subject=metrics_subject(offer.job_id, self.node_id),
                        stream=METRICS.name,
                        headers={
                            KIND_HEADER: machine.kind,
                            ATTEMPT_HEADER: str(offer.attempt),
                            NODE_RANK_HEADER: str(offer.node_rank),
                        },
                    )
                    return
                attempt.tail = [*attempt.tail[-4:], line]
                await self._broker.publish(
                    line.encode(),
                    subject=log_subject(offer.job_id, self.node_id),
                    stream=LOGS.name,
                    headers={
                        ATTEMPT_HEADER: str(offer.attempt),
                        STREAM_HEADER: stream,
                        NODE_RANK_HEADER: str(offer.node_rank),
                    },
                )

            if attempt.stop_reason is not None:
                raise asyncio.CancelledError
            attempt.process = await JobProcess.start(
                argv, env=env, cwd=str(cwd), on_line=on_line, stop_grace_s=self.settings.stop_grace_s
            )
            if server is not None:
                await self._await_server(attempt, server, log_file)
            attempt.phase, attempt.message, attempt.progress = pb.JOB_STATUS_RUNNING, "", 1.0
            await self._report(attempt)
            try:
                timeout = offer.max_runtime_s or None
                try:
                    code = await asyncio.wait_for(asyncio.shield(attempt.process.wait()), timeout=timeout)
                except TimeoutError:
                    attempt.stop_reason = pb.JOB_STATUS_TIMED_OUT
                    attempt.stop_message = f"ran past its max run time ({offer.max_runtime_s:g} s)"
                    await attempt.process.stop(self.settings.stop_grace_s)
                    code = await attempt.process.wait()
            finally:
                log_file.close()
            attempt.exit_code = code
            if attempt.stop_reason is not None:
                attempt.phase, attempt.message = attempt.stop_reason, attempt.stop_message
            elif code == 0:
                attempt.result_json = await asyncio.to_thread(read_result, output) if output else ""
                attempt.phase, attempt.message = pb.JOB_STATUS_SUCCEEDED, ""
            else:
                attempt.phase = pb.JOB_STATUS_FAILED
                attempt.message = " | ".join(attempt.tail[-2:])[-500:]
        except StagingError as exc:
            attempt.phase, attempt.message = pb.JOB_STATUS_FAILED, str(exc)
        except asyncio.CancelledError:
            attempt.phase = attempt.stop_reason or pb.JOB_STATUS_CANCELLED
            attempt.message = attempt.stop_message
        except Exception as exc:
            log.exception("attempt failed on this node", job_id=offer.job_id)
            attempt.phase, attempt.message = pb.JOB_STATUS_FAILED, f"agent error: {exc}"
        finally:
            if attempt.phase not in TERMINAL:
                attempt.phase = pb.JOB_STATUS_CANCELLED
            attempt.finished_at = time.monotonic()
            if attempt.delete_storage:
                storage = instance_storage(self.settings, offer.spec.instance.instance_id)
                await asyncio.shield(asyncio.to_thread(remove_storage, storage))
            await asyncio.shield(self._report(attempt))

    async def _await_server(self, attempt: Attempt, server: InstanceServer, log_file: TextIO) -> None:
        """Keeps an instance's run preparing until its server answers (RUNNING then carries its
        endpoint); a server that exits first, or never answers, fails the run."""
        assert attempt.process is not None
        attempt.message = f"starting the {server.kind} server"
        await self._report(attempt)
        problem = await server.wait_ready(attempt.process, self.settings.instance_start_timeout_s)
        if problem is None:
            attempt.endpoint = server.endpoint
            return
        await attempt.process.stop(self.settings.stop_grace_s)
        log_file.close()
        if attempt.stop_reason is not None:  # stopped while starting: not a failure
            raise asyncio.CancelledError
        tail = " | ".join(attempt.tail[-2:])[-400:]
        raise StagingError(f"{problem}: {tail}" if tail else problem)

    def _base_env(self) -> dict[str, str]:
        """The agent's environment without its own settings, its Python's scripts first on PATH."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SUANLI_")}
        env["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{env.get('PATH', '')}"
        return env

    def _open_log(self, offer: pb.WorkOffer) -> TextIO:
        folder = self.settings.work_dir / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        return open(folder / f"{offer.job_id}-{offer.attempt}.log", "a", encoding="utf-8")

    def _job_env(
        self, attempt: Attempt, volume: Path, ckpt: Path, output: Path, model: str, dataset: str
    ) -> dict[str, str]:
        offer = attempt.offer
        env = {k: v for k, v in os.environ.items() if not k.startswith("SUANLI_")}
        env.update(offer.spec.env)
        bindir = os.path.dirname(sys.executable)
        env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
        env.update(
            {
                "NNODES": str(offer.nnodes),
                "NODE_RANK": str(offer.node_rank),
                "WORLD_SIZE": str(offer.nnodes * attempt.slots),
                "RANK": str(offer.node_rank * attempt.slots),
                "LOCAL_RANK": "0",
                "MASTER_ADDR": offer.master_addr,
                "MASTER_PORT": str(offer.master_port),
                "SUANLI_JOB_ID": offer.job_id,
                "SUANLI_ATTEMPT": str(offer.attempt),
                "SUANLI_RESUME": "1" if offer.resume else "0",
                "SUANLI_VOLUME": str(volume),
                "SUANLI_CKPT_PATH": str(ckpt),
                "SUANLI_OUTPUT_PATH": str(output),
                "SUANLI_MODEL_PATH": model,
                "SUANLI_DATASET_PATH": dataset,
                "PYTHONUNBUFFERED": "1",
            }
        )
        if attempt.devices:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(attempt.devices)
        if _launch_type(offer.spec) == "mpi":
            # The secret the launcher and workers prove to each other; the lease id is this
            # attempt's alone and never leaves the scheduler and the job's agents.
            env[MPI_TOKEN_ENV] = offer.lease_id
        return env

    def _argv(self, attempt: Attempt, volume: Path, env: dict[str, str]) -> list[str]:
        offer = attempt.offer
        launch = Launch(
            command=offer.spec.command,
            job_type=_launch_type(offer.spec),
            node_rank=offer.node_rank,
            nnodes=offer.nnodes,
            slots=attempt.slots,
            master_addr=offer.master_addr,
            master_port=offer.master_port,
        )
        if not offer.spec.image:
            return command_argv(launch)
        if not self._runtime:
            raise StagingError("image jobs need docker or podman, and this node has neither")
        name = f"suanli-{offer.job_id}-{offer.attempt}"
        argv = [self._runtime, "run", "--rm", "--name", name, "--network", "host", "-v", f"{volume}:{volume}"]
        argv += ["-w", str(volume)]
        for key in (*offer.spec.env, *(k for k in env if k.startswith("SUANLI_") or k in _RANK_ENV)):
            argv += ["-e", f"{key}={env[key]}"]
        if attempt.devices:
            argv += ["--gpus", f"device={','.join(attempt.devices)}"]
        argv.append(offer.spec.image)
        if offer.spec.command:
            argv += command_argv(launch)
        return argv

    # ---- reports and heartbeats ------------------------------------------------------------------

    async def _report(self, attempt: Attempt) -> None:
        """Sends the attempt's state; retried until JetStream takes it (reports must not be lost)."""
        offer = attempt.offer
        report = pb.JobReport(
            node_id=self.node_id,
            job_id=offer.job_id,
            attempt=offer.attempt,
            lease_id=offer.lease_id,
            phase=attempt.phase,  # type: ignore[arg-type]
            exit_code=attempt.exit_code,
            message=attempt.message,
            progress=attempt.progress,
            result_json=attempt.result_json,
            endpoint=attempt.endpoint,
        )
        report.at.GetCurrentTime()
        body = report.SerializeToString()
        for delay in (0.2, 0.5, 1, 2, 5, 5, 5, 5, 5, 5):
            try:
                await self._broker.publish(body, subject=report_subject(self.node_id), stream=WORK.name)
                return
            except Exception:
                log.warning("report not accepted yet; retrying", job_id=offer.job_id, exc_info=True)
                await asyncio.sleep(delay)
        # The heartbeat still carries the state, so the scheduler reconciles from it.

    def heartbeat(self) -> pb.AgentHeartbeat:
        now = time.monotonic()
        linger = self.settings.finished_linger_s
        for job_id, a in list(self.attempts.items()):
            if a.finished_at is not None and now - a.finished_at > linger:
                del self.attempts[job_id]
        low, high = self.settings.port_range
        beat = pb.AgentHeartbeat(
            node_id=self.node_id,
            address=self.settings.agent_address,
            container_runtime=self._runtime,
            port_range_start=low,
            port_range_end=high,
            instance_id=self.instance_id,
            cpu_millis=self._cpu_millis,
            memory_mb=self._memory_mb,
            unavailable_instance_kinds=self._unavailable_kinds,
        )
        for pool in self._pools:
            used = sum(
                a.slots
                for a in self.attempts.values()
                if a.live and a.offer.gpu_type.lower() == pool.gpu_type.lower()
            )
            beat.gpus.add(
                node_id=self.node_id,
                gpu_type=pool.gpu_type,
                total=pool.count,
                used=used,
                memory_mb=pool.memory_mb,
            )
        for a in self.attempts.values():
            beat.attempts.add(
                job_id=a.offer.job_id,
                attempt=a.offer.attempt,
                lease_id=a.offer.lease_id,
                phase=a.phase,  # type: ignore[arg-type]
                exit_code=a.exit_code,
                message=a.message,
                gpu_type=a.offer.gpu_type,
                slots=a.slots,
                result_json=a.result_json,
                endpoint=a.endpoint,
            )
        beat.sent_at.GetCurrentTime()
        return beat

    async def shutdown(self) -> None:
        """Stops every attempt; their final reports give the work back to the scheduler."""
        await asyncio.gather(
            *(
                self._stop_attempt(a, pb.JOB_STATUS_CANCELLED, "the agent stopped")
                for a in self.attempts.values()
                if a.live
            )
        )


def read_result(output: Path) -> str:
    """The text of `<output>/result.json` for the final report: "" when there is none, and a small
    JSON object with an "error" when it is too large or not JSON (the job still succeeded)."""
    path = output / RESULT_FILE
    try:
        size = path.stat().st_size
        if not path.is_file():
            return ""
        if size > RESULT_LIMIT:
            return _result_error(f"{RESULT_FILE} is {size} bytes; the limit is {RESULT_LIMIT}")
        text = path.read_bytes().decode()  # as written: no newline translation
        json.loads(text)
    except FileNotFoundError:
        return ""
    except (OSError, ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        return _result_error(f"{RESULT_FILE} is not readable JSON: {exc}")
    if len(text.encode()) > RESULT_LIMIT:  # grew between the stat and the read
        return _result_error(f"{RESULT_FILE} is {len(text.encode())} bytes; the limit is {RESULT_LIMIT}")
    return text


def _result_error(message: str) -> str:
    return json.dumps({"error": message})


def _launch_type(spec: pb.JobSpec) -> str:
    """How the job's command is started. An `mpi` job with an image runs its command in the
    container on each node (the launcher and workers are the agent's Python, not the image's)."""
    if spec.job_type == pb.JOB_TYPE_PYTORCH:
        return "pytorch"
    if spec.job_type == pb.JOB_TYPE_MPI and not spec.image:
        return "mpi"
    return "other"


_RANK_ENV = ("NNODES", "NODE_RANK", "WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
