"""An instance's server on this node: the kinds it can run, its storage (read-only copies of its
mounts, a workspace kept across runs), the environment and command line of each kind, and a
real TensorBoard and a real failing server started the way the agent starts them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import pytest

from suanli_common.proto.suanli.v1 import scheduler_pb2 as pb
from suanli_trainer_agent.instances import make_read_only, prepare_server, remove_storage, unavailable_kinds
from suanli_trainer_agent.runner import JobProcess
from suanli_trainer_agent.settings import AgentSettings
from suanli_trainer_agent.staging import StagingError


@pytest.fixture
def settings(tmp_path: Path) -> AgentSettings:
    return AgentSettings(
        home=tmp_path, node_id="node-x", llamafactory_cli=str(tmp_path / "nowhere" / "llamafactory-cli")
    )


@pytest.fixture
def model(tmp_path: Path) -> Path:
    folder = tmp_path / "catalog" / "tiny"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")
    return folder


async def no_progress(value: float, message: str) -> None:
    return None


def launch(kind: str, *mounts: pb.InstanceMount, cpu_millis: int = 2000) -> pb.JobSpec:
    return pb.JobSpec(
        job_type=pb.JOB_TYPE_INSTANCE,
        cpu_millis=cpu_millis,
        instance=pb.InstanceLaunch(
            instance_id="inst_1",
            kind=kind,
            token="secret-token",
            base_url="/instances/inst_1/",
            mounts=mounts,
        ),
    )


def test_a_node_says_which_kinds_it_cannot_run_and_why(settings: AgentSettings, tmp_path: Path) -> None:
    missing = unavailable_kinds(settings)
    assert set(missing) == {"llamafactory"}  # jupyterlab and tensorboard are this package's extra
    assert missing["llamafactory"].startswith("the llamafactory package is not installed on node node-x")
    assert "SUANLI_LLAMAFACTORY_CLI" in missing["llamafactory"]
    cli = tmp_path / "venv" / "llamafactory-cli"
    cli.parent.mkdir()
    cli.write_text("#!/bin/sh\n")
    cli.chmod(0o755)
    assert "llamafactory" not in unavailable_kinds(settings.model_copy(update={"llamafactory_cli": str(cli)}))


async def test_jupyterlab_gets_read_only_copies_of_its_mounts_and_their_paths_in_its_environment(
    settings: AgentSettings, model: Path
) -> None:
    dataset = model.parent / "train.jsonl"
    dataset.write_text('{"messages": []}\n')
    spec = launch(
        "jupyterlab",
        pb.InstanceMount(kind="model", id="tiny", name="tiny", source=str(model)),
        pb.InstanceMount(kind="dataset", id="file-1", name="train.jsonl", source=f"file://{dataset}"),
    )
    server = await prepare_server(settings, spec, (), {"PATH": "/usr/bin"}, no_progress)
    storage = settings.resolved_volumes_dir / "instances" / "inst_1"
    assert server.storage == storage and server.workspace == storage / "work" and server.workspace.is_dir()
    copied = storage / "models" / "tiny"
    assert (copied / "model.safetensors").read_bytes() == b"weights"
    assert not os.stat(copied / "config.json").st_mode & 0o222  # no write bit for anyone
    assert not os.stat(copied).st_mode & 0o222 and not os.stat(storage / "models").st_mode & 0o222
    env = server.env
    assert env["SUANLI_MODEL_PATH"] == str(copied)
    assert env["SUANLI_DATASET_PATH"] == str(storage / "datasets" / "train.jsonl")
    assert env["SUANLI_ADAPTER_PATH"] == "" and env["SUANLI_ADAPTERS_DIR"] == str(storage / "adapters")
    assert env["JUPYTER_TOKEN"] == "secret-token" and "secret-token" not in " ".join(server.argv)
    assert env["OMP_NUM_THREADS"] == "2" and env["HOME"] == str(storage / ".home")
    assert "--ServerApp.base_url=/instances/inst_1/" in server.argv
    assert f"--ServerApp.root_dir={storage}" in server.argv
    assert server.probe_path == "/instances/inst_1/api" and server.endpoint.startswith("127.0.0.1:")

    # A second run keeps the workspace and reuses the copies.
    (server.workspace / "notebook.ipynb").write_text("{}")
    again = await prepare_server(settings, spec, (), {}, no_progress)
    assert (again.workspace / "notebook.ipynb").exists() and again.endpoint != ""
    remove_storage(storage)
    assert not storage.exists()


async def test_a_mount_that_is_not_there_fails_the_run_with_its_name(
    settings: AgentSettings, tmp_path: Path
) -> None:
    spec = launch(
        "jupyterlab", pb.InstanceMount(kind="model", id="gone", name="gone", source=str(tmp_path / "gone"))
    )
    with pytest.raises(StagingError, match="does not exist on this node"):
        await prepare_server(settings, spec, (), {}, no_progress)


async def test_llamafactory_is_refused_where_its_command_is_missing(settings: AgentSettings) -> None:
    with pytest.raises(StagingError, match="the llamafactory package is not installed on node node-x"):
        await prepare_server(settings, launch("llamafactory"), (), {}, no_progress)


async def test_a_tensorboard_server_answers_under_its_prefix(settings: AgentSettings, tmp_path: Path) -> None:
    logs = tmp_path / "job_1"
    logs.mkdir()
    spec = launch("tensorboard", pb.InstanceMount(kind="job", id="job_1", name="job_1", source=str(logs)))
    server = await prepare_server(settings, spec, (), dict(os.environ), no_progress)
    assert f"--logdir_spec=job_1:{logs}" in server.argv and "--path_prefix=/instances/inst_1" in server.argv

    async def ignore(stream: str, line: str) -> None:
        return None

    process = await JobProcess.start(server.argv, env=server.env, cwd=str(server.workspace), on_line=ignore)
    try:
        assert await server.wait_ready(process, 120) is None
        async with httpx.AsyncClient() as client:
            runs = await client.get(f"http://{server.endpoint}/instances/inst_1/data/runs")
        assert runs.status_code == 200
    finally:
        await process.stop(5)


async def test_a_server_that_exits_before_it_answers_is_reported(settings: AgentSettings) -> None:
    spec = launch("jupyterlab")
    server = await prepare_server(settings, spec, (), {}, no_progress)

    async def ignore(stream: str, line: str) -> None:
        return None

    process = await JobProcess.start(
        [sys.executable, "-c", "raise SystemExit(3)"], env=dict(os.environ), cwd="/", on_line=ignore
    )
    assert (
        await server.wait_ready(process, 60) == "the jupyterlab server exited with code 3 before it answered"
    )


def test_read_only_trees_can_still_be_removed(tmp_path: Path) -> None:
    tree = tmp_path / "storage" / "models" / "m"
    tree.mkdir(parents=True)
    (tree / "weights").write_bytes(b"x")
    make_read_only(tmp_path / "storage" / "models")
    remove_storage(tmp_path / "storage")
    assert not (tmp_path / "storage").exists()
