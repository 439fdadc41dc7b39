"""Jobs through a real agent and nats-server: machine lines routed to METRICS (and kept out of LOGS),
result.json in the final report, and inputs staged from a real local HTTP server."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nats
import pytest
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext

from suanli_common.proto.suanli.v1 import scheduler_pb2 as pb
from suanli_common.testing import NatsServer
from suanli_trainer_agent.main import AgentApp, start_agent
from suanli_trainer_agent.protocol import command_subject, report_subject
from suanli_trainer_agent.settings import AgentSettings
from suanli_trainer_agent.staging import StagingError, stage

pytestmark = pytest.mark.integration

NODE = "node-t"
TERMINAL = {pb.JOB_STATUS_SUCCEEDED, pb.JOB_STATUS_FAILED, pb.JOB_STATUS_CANCELLED, pb.JOB_STATUS_TIMED_OUT}

# ---- a real HTTP server over a folder -------------------------------------------------------------


class FileServer(ThreadingHTTPServer):
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.failed_once: set[str] = set()
        self.requests: list[str] = []
        super().__init__(("127.0.0.1", 0), FileHandler)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class FileHandler(SimpleHTTPRequestHandler):
    """Serves the server's folder; a path under /flaky/ answers 503 the first time it is asked for."""

    server: FileServer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, directory=str(args[2].folder), **kwargs)

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        path = urlsplit(self.path).path
        if path.startswith("/flaky/"):
            if path not in self.server.failed_once:
                self.server.failed_once.add(path)
                self.send_error(503, "try again")
                return
            self.path = self.path.replace("/flaky", "", 1)
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_files(tmp_path: Path) -> Iterator[FileServer]:
    folder = tmp_path / "served"
    folder.mkdir()
    server = FileServer(folder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


# ---- staging from URLs ----------------------------------------------------------------------------


async def test_staging_downloads_http_inputs_with_progress(http_files: FileServer, tmp_path: Path) -> None:
    body = bytes(range(256)) * 12_000  # ~3 MB: several chunks
    (http_files.folder / "ds").mkdir()
    await asyncio.to_thread((http_files.folder / "ds" / "train.jsonl").write_bytes, body)
    seen: list[tuple[float, str]] = []

    async def progress(value: float, message: str) -> None:
        seen.append((value, message))

    url = f"{http_files.base}/flaky/ds/train.jsonl?X-Amz-Signature=secret&X-Amz-Expires=60"
    paths = await stage(
        tmp_path / "vol",
        ckpt_path="",
        model_save_path="",
        model_path="",
        dataset_path=url,
        volume_gb=0,
        on_progress=progress,
    )
    staged = Path(paths.dataset)
    assert staged == tmp_path / "vol" / "inputs" / "dataset" / "train.jsonl"
    assert await asyncio.to_thread(staged.read_bytes) == body
    assert not staged.with_name("train.jsonl.partial").exists()
    assert len(http_files.requests) == 2  # the 503 was retried
    downloading = [(v, m) for v, m in seen if m.startswith("downloading dataset")]
    assert downloading and downloading[-1] == (1.0, "downloading dataset: 2.9 of 2.9 MB")
    assert [v for v, _ in seen] == sorted(v for v, _ in seen) and seen[-1] == (1.0, "inputs staged")

    # A second attempt on the same volume keeps what the first one staged.
    await stage(
        tmp_path / "vol",
        ckpt_path="",
        model_save_path="",
        model_path="",
        dataset_path=url,
        volume_gb=0,
        on_progress=progress,
    )
    assert len(http_files.requests) == 2


async def test_http_errors_fail_staging_without_showing_the_query(
    http_files: FileServer, tmp_path: Path
) -> None:
    async def progress(value: float, message: str) -> None:
        pass

    with pytest.raises(StagingError) as caught:
        await stage(
            tmp_path / "vol",
            ckpt_path="",
            model_save_path="",
            model_path=f"{http_files.base}/models/missing.bin?X-Amz-Signature=secret",
            dataset_path="",
            volume_gb=0,
            on_progress=progress,
        )
    message = str(caught.value)
    assert "HTTP 404" in message and f"{http_files.base}/models/missing.bin" in message
    assert "secret" not in message
    assert not list((tmp_path / "vol" / "inputs" / "model").glob("*"))


# ---- jobs through the agent ------------------------------------------------------------------------


@pytest.fixture
async def agent(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[AgentApp]:
    settings = AgentSettings(
        home=tmp_path / "home",
        nats_url=nats_server.url,
        node_id=NODE,
        agent_slots="cpu:1",
        heartbeat_interval_s=0.2,
        stop_grace_s=2.0,
        container_runtime="",
    )
    app = await start_agent(settings)
    yield app
    await app.stop()


@pytest.fixture
async def js(nats_server: NatsServer) -> AsyncIterator[JetStreamContext]:
    client = await nats.connect(nats_server.url)
    yield client.jetstream()
    await client.close()


@pytest.fixture
async def reports(agent: AgentApp, js: JetStreamContext) -> AsyncIterator[JetStreamContext.PushSubscription]:
    """The node's reports, as the scheduler would read them (one consumer: WORK is a work queue)."""
    sub = await js.subscribe(report_subject(NODE))
    yield sub
    await sub.unsubscribe()


def offer(job_id: str, command: str, **spec: Any) -> pb.WorkOffer:
    return pb.WorkOffer(
        job_id=job_id,
        attempt=1,
        lease_id=f"lease-{job_id}",
        gpu_type="cpu",
        nnodes=1,
        node_rank=0,
        master_addr="127.0.0.1",
        master_port=29500,
        spec=pb.JobSpec(name=job_id, command=command, nodes=1, gpus_per_node=1, gpu_type="cpu", **spec),
    )


async def run_to_the_end(
    js: JetStreamContext, reports: JetStreamContext.PushSubscription, work: pb.WorkOffer, timeout: float = 60
) -> pb.JobReport:
    await js.publish(command_subject(NODE), pb.NodeCommand(offer=work).SerializeToString())
    async with asyncio.timeout(timeout):
        while True:
            message = await reports.next_msg(timeout=timeout)
            await message.ack()
            report = pb.JobReport.FromString(message.data)
            if report.job_id == work.job_id and report.phase in TERMINAL:
                return report


async def stored(js: JetStreamContext, subject: str) -> list[Msg]:
    """Every message the stream holds on `subject` now."""
    sub = await js.subscribe(subject, ordered_consumer=True)
    found: list[Msg] = []
    try:
        while True:
            found.append(await sub.next_msg(timeout=1))
    except nats.errors.TimeoutError:
        pass
    finally:
        await sub.unsubscribe()
    return found


JOB = """
import json, os, pathlib
print('SUANLI_METRICS {"step": 1, "total_steps": 2, "loss": 0.5}')
print("step 1/2 loss 0.5000")
print('SUANLI_CHECKPOINT {"step": 1, "path": "checkpoints/checkpoint-1"}')
print("SUANLI_METRICS {not json")
print("SUANLI_RESULT [1, 2]")
data = pathlib.Path(os.environ["SUANLI_DATASET_PATH"])
print("dataset", data.name, data.read_text().strip())
out = pathlib.Path(os.environ["SUANLI_OUTPUT_PATH"])
(out / "result.json").write_text(json.dumps({"bleu": 12.5}))
print('SUANLI_RESULT {"bleu": 12.5}', flush=True)
print("done")
"""


async def test_machine_lines_go_to_metrics_and_the_result_to_the_final_report(
    agent: AgentApp,
    js: JetStreamContext,
    reports: JetStreamContext.PushSubscription,
    http_files: FileServer,
    tmp_path: Path,
) -> None:
    script = tmp_path / "job.py"
    script.write_text(JOB)
    (http_files.folder / "train.jsonl").write_text('{"hello": "world"}\n')
    work = offer(
        "job_metrics",
        f"python {script}",
        model_save_path="output",
        dataset_path=f"{http_files.base}/train.jsonl?X-Amz-Signature=secret",
    )
    report = await run_to_the_end(js, reports, work)
    assert report.phase == pb.JOB_STATUS_SUCCEEDED, report.message
    assert json.loads(report.result_json) == {"bleu": 12.5}

    # Everything was published before the final report, so it is all there now.
    metrics = await stored(js, "metrics.job.job_metrics.>")
    assert [m.subject for m in metrics] == ["metrics.job.job_metrics.node-t"] * 3
    assert [(m.headers or {}).get("Suanli-Kind") for m in metrics] == ["metrics", "checkpoint", "result"]
    assert all(
        (m.headers or {}).get("Suanli-Attempt") == "1" and (m.headers or {}).get("Suanli-Node-Rank") == "0"
        for m in metrics
    )
    assert [json.loads(m.data) for m in metrics] == [
        {"step": 1, "total_steps": 2, "loss": 0.5},
        {"step": 1, "path": "checkpoints/checkpoint-1"},
        {"bleu": 12.5},
    ]
    logs = [m.data.decode() for m in await stored(js, "logs.job.job_metrics.>")]
    assert logs == [
        "step 1/2 loss 0.5000",
        "SUANLI_METRICS {not json",  # malformed: an ordinary line
        "SUANLI_RESULT [1, 2]",  # not an object: an ordinary line
        'dataset train.jsonl {"hello": "world"}',
        "done",
    ]
    local = agent.agent.settings.work_dir / "logs" / "job_metrics-1.log"
    text = await asyncio.to_thread(local.read_text)
    assert 'stdout: SUANLI_METRICS {"step": 1' in text and 'stdout: SUANLI_RESULT {"bleu": 12.5}' in text


async def test_a_failed_job_carries_no_result_and_a_failed_download_fails_the_job(
    js: JetStreamContext, reports: JetStreamContext.PushSubscription, http_files: FileServer
) -> None:
    failing = offer("job_fails", "mkdir -p output && echo '{\"a\": 1}' > output/result.json && exit 3")
    report = await run_to_the_end(js, reports, failing)
    assert report.phase == pb.JOB_STATUS_FAILED and report.exit_code == 3 and report.result_json == ""

    missing = offer("job_nodata", "echo never", dataset_path=f"{http_files.base}/gone.jsonl?sig=secret")
    report = await run_to_the_end(js, reports, missing)
    assert report.phase == pb.JOB_STATUS_FAILED
    assert "HTTP 404" in report.message and "secret" not in report.message
