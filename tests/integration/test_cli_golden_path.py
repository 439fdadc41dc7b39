"""The golden path through the `suanli` CLI alone, as a user types it: `.venv/bin/suanli` run as a
subprocess with a HOME of its own (its session never touches the real user's config), against a
platform that serves. Sign up and in; upload a chat dataset (progress bar, then its id with --json);
fine-tune the tiny test model on the CPU with --follow (its steps and loss printed live); deploy the
fine-tune and wait until it is ready; chat with it, the answer streamed; delete the deployment.
Also: the mistakes a user makes read as one line with a non-zero exit code."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from suanli_common.testing import free_port

if TYPE_CHECKING:
    from conftest import Platform

# Ray and a vLLM replica of the tiny model start in minutes on two loaded cores.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

# The tiny Qwen2 test model: a LoRA fine-tune of it trains in seconds on the CPU, vLLM serves it in
# about a minute. Its weights are random, so its answers are noise: they are checked for being there.
BASE_MODEL = "suanli-tiny-qwen2"
SUFFIX = "golden"
PASSWORD = "correct-horse-1"
EXAMPLES = [
    ("What is Suanli?", "Suanli is a self-hosted cloud for training and serving language models."),
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Say hello.", "Hello, how are you today?"),
    ("How are you?", "I am fine, thank you."),
    ("Write a short poem about the sea.", "The sea is wide and blue, the waves come back to you."),
    ("What does a user do?", "A user uploads a dataset, fine-tunes an open model, deploys it and chats."),
    ("Count to five.", "1 2 3 4 5"),
    ("Who are you?", "I am Suanli, a helpful assistant."),
]
EPOCHS, BATCH_SIZE = 4, 2
TOTAL_STEPS = EPOCHS * len(EXAMPLES) // BATCH_SIZE
COMMAND_TIMEOUT_S = 120.0
FINE_TUNE_TIMEOUT_S = 600.0
READY_TIMEOUT_S = 900.0
STEP_LINE = re.compile(r"^step (\d+)/(\d+)  loss (\d+\.\d{4})$")


@pytest.fixture(scope="module")
def platform_env() -> dict[str, str]:
    # The seed deployment (SmolLM2, minutes and gigabytes) is not part of this path: both CPU slots
    # are for the fine-tune, then for this module's own deployments.
    return {"SUANLI_SERVING": "true", "SUANLI_DEPLOY_SEED": "false"}


class SuanliCli:
    """`.venv/bin/suanli` as a subprocess with a HOME of its own and no SUANLI_* variable of the
    caller's (no API key, no config path leaks in), pointed at the platform."""

    def __init__(self, platform: Platform, home: Path) -> None:
        self.home = home
        self.executable = str(Path(sys.executable).parent / "suanli")
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith("SUANLI_") and k != "XDG_CONFIG_HOME"
        }
        self.env.update(HOME=str(home), SUANLI_API_URL=platform.base_url, COLUMNS="200")

    @property
    def config_file(self) -> Path:
        return self.home / ".config" / "suanli" / "config.json"

    def __call__(
        self,
        *args: str,
        ok: bool = True,
        env: Mapping[str, str] | None = None,
        timeout: float = COMMAND_TIMEOUT_S,
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.executable, *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if ok:
            assert done.returncode == 0, f"suanli {' '.join(args)} -> {done.returncode}:\n{done.stderr}"
        return done

    def json(self, *args: str) -> Any:
        """`--json` output, which must parse whole."""
        return json.loads(self(*args, "--json").stdout)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [self.executable, *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def error_line(done: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The one `error: ...` line of a failed command, which printed nothing else and no traceback."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert done.stdout == ""
    return lines[0].removeprefix("error: ")


@pytest.fixture(scope="module")
def cli(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> SuanliCli:
    return SuanliCli(platform, tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def email(cli: SuanliCli, platform: Platform) -> str:
    address = f"golden-{uuid.uuid4().hex[:10]}@example.com"
    signed_up = cli("signup", "--email", address, "--password", PASSWORD)
    assert f"signed in to {platform.base_url} as {address}" in signed_up.stdout
    return address


def test_sign_up_and_in_keep_the_session_in_the_clis_own_home(
    cli: SuanliCli, email: str, platform: Platform
) -> None:
    stored = json.loads(cli.config_file.read_text())
    assert (stored["api_url"], stored["email"]) == (platform.base_url, email)
    cli("logout")
    assert error_line(cli("whoami", ok=False)).startswith("not signed in")
    signed_in = cli("login", "--email", email, "--password", PASSWORD)
    assert f"as {email}" in signed_in.stdout and str(cli.config_file) in signed_in.stdout
    me = cli.json("whoami")
    assert (me["email"], me["role"]) == (email, "user")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "golden.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in EXAMPLES
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@dataclass(frozen=True)
class Upload:
    shown: str  # what the plain upload printed: its progress bar, then the file
    file: dict[str, Any]  # the --json upload


@pytest.fixture(scope="module")
def upload(cli: SuanliCli, email: str, dataset: Path) -> Upload:
    shown = cli("files", "upload", str(dataset)).stdout
    return Upload(shown, cli.json("files", "upload", str(dataset), "--purpose", "fine-tune"))


def test_an_upload_shows_its_progress_and_json_gives_the_file_id(upload: Upload, cli: SuanliCli) -> None:
    # The bar as a pipe gets it: drawn once, complete (sent == size).
    bar = re.search(r"uploading golden\.jsonl .*? (\d+\.\d)/(\d+\.\d) kB", upload.shown)
    assert bar and bar.group(1) == bar.group(2), upload.shown
    assert re.search(r"^examples +8 *$", upload.shown, re.MULTILINE), upload.shown
    file = upload.file
    assert file["id"].startswith("file-") and file["status"] == "processed", file
    assert (file["filename"], file["validation"]["examples"]) == ("golden.jsonl", len(EXAMPLES))
    assert cli.json("files", "show", file["id"]) == file
    assert file["id"] in [f["id"] for f in cli.json("files", "list", "--purpose", "fine-tune")["data"]]


def test_mistakes_read_as_one_line(
    cli: SuanliCli, upload: Upload, platform: Platform, tmp_path: Path
) -> None:
    file_id = upload.file["id"]
    unknown_model = cli("fine-tunes", "create", "--model", "no-such-model", "--file", file_id, ok=False)
    assert "no-such-model" in error_line(unknown_model)
    unknown_file = cli("fine-tunes", "create", "--model", BASE_MODEL, "--file", "file-nope", ok=False)
    assert "file-nope" in error_line(unknown_file) and "training_file" in error_line(unknown_file)
    assert "file-nope" in error_line(cli("files", "show", "file-nope", "--json", ok=False))
    assert "no-such-model" in error_line(cli("deployments", "create", "no-such-model", ok=False))
    assert "no-such-model" in error_line(cli("chat", "hi", "--model", "no-such-model", ok=False))
    assert error_line(cli("usage", "--csv", "--json", ok=False), code=2) == "give --csv or --json, not both"

    nowhere = f"http://127.0.0.1:{free_port()}"
    with_key = {"SUANLI_API_URL": nowhere, "SUANLI_API_KEY": "sk-anything"}
    unreachable = cli("models", "list", ok=False, env=with_key)
    assert error_line(unreachable) == f"cannot reach the Suanli API at {nowhere} — is `suanli up` running?"
    # The session is never sent to another server than its own.
    elsewhere = cli("models", "list", ok=False, env={"SUANLI_API_URL": nowhere})
    assert error_line(elsewhere).startswith(
        f"not signed in to {nowhere} (your session is for http://127.0.0.1:"
    )
    not_a_url = cli("models", "list", ok=False, env={"SUANLI_API_URL": nowhere.removeprefix("http://")})
    assert "not a server URL" in error_line(not_a_url)
    signed_out = cli("files", "list", ok=False, env={"HOME": str(tmp_path)})
    assert error_line(signed_out) == "not signed in: run `suanli login` or set SUANLI_API_KEY"


@dataclass(frozen=True)
class FollowedFineTune:
    lines: list[str]  # stdout, line by line as it came
    stderr: str
    returncode: int

    @property
    def job_id(self) -> str:
        return self.lines[0].removeprefix("created fine-tune ")


@pytest.fixture(scope="module")
def followed(cli: SuanliCli, upload: Upload) -> FollowedFineTune:
    process = cli.start(
        "fine-tunes",
        "create",
        "--model",
        BASE_MODEL,
        "--file",
        upload.file["id"],
        "--suffix",
        SUFFIX,
        "--epochs",
        str(EPOCHS),
        "--batch-size",
        str(BATCH_SIZE),
        "--lr-multiplier",
        "10",
        "--follow",
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        lines = [line.rstrip("\n") for line in process.stdout]  # read as the CLI prints them
        returncode = process.wait(timeout=FINE_TUNE_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
    return FollowedFineTune(lines, process.stderr.read(), returncode)


def test_a_followed_fine_tune_shows_its_steps_and_loss_live_and_succeeds(
    followed: FollowedFineTune, cli: SuanliCli
) -> None:
    assert followed.returncode == 0, (followed.lines, followed.stderr)
    job_id = followed.job_id
    assert job_id.startswith("job_"), followed.lines
    steps = [(i, STEP_LINE.match(line)) for i, line in enumerate(followed.lines)]
    found = [(i, m) for i, m in steps if m]
    assert [int(m.group(1)) for _, m in found] == list(range(1, TOTAL_STEPS + 1)), followed.lines
    assert all(int(m.group(2)) == TOTAL_STEPS and float(m.group(3)) > 0 for _, m in found)
    # Live: the CLI saw it running before its first step, not just its end.
    assert followed.lines.index(f"fine-tune {job_id} running") < found[0][0], followed.lines
    model = f"ft:{BASE_MODEL}:{SUFFIX}:{job_id}"
    assert followed.lines[-1] == f"fine-tune {job_id} succeeded: {model}"

    shown = cli.json("fine-tunes", "show", job_id)
    assert (shown["status"], shown["fine_tuned_model"]) == ("succeeded", model)
    assert (shown["hyperparameters"]["n_epochs"], shown["hyperparameters"]["batch_size"]) == (
        EPOCHS,
        BATCH_SIZE,
    )
    assert job_id in [j["id"] for j in cli.json("fine-tunes", "list")["data"]]
    events = cli.json("fine-tunes", "events", job_id, "--limit", "100")["data"]
    assert len([e for e in events if e["type"] == "metrics"]) == TOTAL_STEPS


@pytest.fixture(scope="module")
def fine_tuned_model(cli: SuanliCli, followed: FollowedFineTune) -> str:
    """The fine-tune's model, once the catalog has registered it (it does on job.succeeded)."""
    assert followed.returncode == 0, followed.stderr
    model_id = followed.lines[-1].rsplit(": ", 1)[1]
    deadline = time.monotonic() + 60
    while (model := cli.json("models", "show", model_id))["state"] != "ready":
        assert model["state"] == "registering" and time.monotonic() < deadline, model
        time.sleep(1)
    assert (model["kind"], model["base_model_id"]) == ("fine_tuned", BASE_MODEL)
    assert model_id in [m["id"] for m in cli.json("models", "list")["data"]]
    return model_id


@dataclass(frozen=True)
class Deployment:
    ready: dict[str, Any]  # what `deployments create --wait --json` printed once it was ready
    progress: str  # what that command said on stderr meanwhile


@pytest.fixture(scope="module")
def deployment(cli: SuanliCli, fine_tuned_model: str) -> Deployment:
    """The fine-tune, deployed with `deployments create --wait --json`."""
    # The command's own --timeout bounds the wait, not the default limit of a quick command: Ray
    # and the replica take longer than that to start on a loaded machine.
    created = cli(
        "deployments",
        "create",
        fine_tuned_model,
        "--wait",
        "--timeout",
        str(READY_TIMEOUT_S),
        "--json",
        timeout=READY_TIMEOUT_S + COMMAND_TIMEOUT_S,
    )
    return Deployment(json.loads(created.stdout), created.stderr)


def test_the_fine_tune_deploys_and_gets_ready(
    deployment: Deployment, cli: SuanliCli, fine_tuned_model: str
) -> None:
    ready = deployment.ready
    assert (ready["model"], ready["status"], ready["gpu_type"]) == (fine_tuned_model, "ready", "cpu")
    # `create --wait --json` said how it went on stderr and left stdout to the JSON alone.
    assert f"deployment {ready['id']} ready" in deployment.progress
    listed = {d["id"]: d for d in cli.json("deployments", "list")["data"]}
    assert listed[ready["id"]]["status"] == "ready"
    shown = cli("deployments", "show", ready["id"]).stdout
    assert re.search(r"^status +ready *$", shown, re.MULTILINE), shown


def test_chat_with_the_fine_tune_streams_an_answer(
    deployment: Deployment, cli: SuanliCli, fine_tuned_model: str
) -> None:
    question = ("chat", "What is the capital of France?", "--model", fine_tuned_model, "--max-tokens", "16")
    # Sampled with a seed: the random-weight model's likeliest token may be a newline every time.
    answered = cli(*question, "--temperature", "1", "--seed", "7")
    *answer, tokens = answered.stdout.rstrip("\n").split("\n")
    assert "".join(answer).strip(), answered.stdout
    counted = re.fullmatch(r"(\d+) prompt \+ (\d+) completion tokens", tokens)
    assert counted and int(counted.group(1)) > 0 and 0 < int(counted.group(2)) <= 16, tokens

    as_json = cli.json(*question, "--temperature", "1", "--seed", "7")
    assert as_json["model"] == fine_tuned_model and as_json["content"].strip()
    assert 0 < as_json["usage"]["completion_tokens"] <= 16


def test_deleting_the_deployment_frees_its_slot(deployment: Deployment, cli: SuanliCli) -> None:
    deployment_id = deployment.ready["id"]
    deleted = cli("deployments", "delete", deployment_id).stdout
    assert re.fullmatch(rf"deployment {deployment_id} (stopping|stopped)\n", deleted), deleted
    deadline = time.monotonic() + 180
    while (gone := cli("deployments", "show", deployment_id, "--json", ok=False)).returncode == 0:
        assert time.monotonic() < deadline, gone.stdout
        time.sleep(2)
    assert error_line(gone) == f"no deployment {deployment_id} (parameter: deployment_id)"
    assert deployment_id not in {d["id"] for d in cli.json("deployments", "list")["data"]}
    assert [(t["gpu_type"], t["used"]) for t in cli.json("gpus")["by_type"]] == [("cpu", 0)]
