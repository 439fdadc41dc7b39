"""The `suanli` CLI as a client of the real platform (launcher, gateway, auth, catalog, scheduler,
one trainer agent with two CPU slots): sign up and in, keys, a dataset upload, a followed job, the
GPU inventory, the model repository, and how a failure reads."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from typer.testing import CliRunner, Result

from suanli_cli.main import app

if TYPE_CHECKING:
    from conftest import Platform

pytestmark = pytest.mark.integration

DATASET = Path(__file__).resolve().parents[2] / "examples" / "identity.jsonl"
SEED_CHAT_MODEL = "smollm2-135m-instruct"
PASSWORD = "correct-horse-1"


class Cli:
    """Runs `suanli ...` in-process against the platform, with a config file of its own."""

    def __init__(self, platform: Platform, config: Path) -> None:
        self.env: dict[str, str | None] = {
            "SUANLI_API_URL": platform.base_url,
            "SUANLI_CONFIG": str(config),
            "SUANLI_API_KEY": None,
        }
        self.runner = CliRunner()

    def __call__(self, *args: str, env: dict[str, str | None] | None = None, ok: bool = True) -> Result:
        result = self.runner.invoke(app, list(args), env={**self.env, **(env or {})})
        if ok:
            assert result.exit_code == 0, f"suanli {' '.join(args)} -> {result.exit_code}:\n{result.output}"
        return result

    def json(self, *args: str, env: dict[str, str | None] | None = None) -> Any:
        return json.loads(self(*args, "--json", env=env).stdout)


@pytest.fixture(scope="module")
def account(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cli, str]]:
    """A CLI signed up (and so signed in) as a new user."""
    cli = Cli(platform, tmp_path_factory.mktemp("cli") / "config.json")
    email = f"cli-{uuid.uuid4().hex[:10]}@example.com"
    signed_up = cli("signup", "--email", email, "--password", PASSWORD)
    assert f"signed in to {platform.base_url} as {email}" in signed_up.stdout
    yield cli, email


def test_login_logout_and_whoami(account: tuple[Cli, str], platform: Platform) -> None:
    cli, email = account
    assert cli.json("whoami")["email"] == email
    cli("logout")
    signed_out = cli("whoami", ok=False)
    assert signed_out.exit_code == 1
    assert signed_out.stderr.strip() == "error: not signed in: run `suanli login` or set SUANLI_API_KEY"

    cli("login", "--email", email, "--password", PASSWORD)
    shown = cli("whoami")
    assert email in shown.stdout and platform.base_url in shown.stdout
    stored = json.loads(Path(str(cli.env["SUANLI_CONFIG"])).read_text())
    assert stored["api_url"] == platform.base_url and stored["email"] == email and stored["access_token"]


def test_bad_credentials_fail_in_one_clear_line(account: tuple[Cli, str]) -> None:
    cli, email = account
    refused = cli("login", "--email", email, "--password", "wrong-password", ok=False)
    assert refused.exit_code == 1
    assert refused.stderr.startswith("error: ") and len(refused.stderr.strip().splitlines()) == 1
    assert "Traceback" not in refused.output and refused.stdout == ""
    bad_key = cli("whoami", env={"SUANLI_API_KEY": "sk-not-a-key"}, ok=False)
    assert bad_key.exit_code == 1
    assert "the key in SUANLI_API_KEY was refused" in bad_key.stderr
    assert cli.json("whoami")["email"] == email  # the stored session was left alone


def test_api_keys_create_list_use_and_revoke(account: tuple[Cli, str]) -> None:
    cli, email = account
    created = cli.json("keys", "create", "ci")
    assert created["name"] == "ci" and created["key"]
    listed = cli.json("keys", "list")["data"]
    assert created["id"] in [k["id"] for k in listed]
    assert "key" not in listed[0]
    assert created["id"] in cli("keys", "list").stdout

    me = cli.json("whoami", env={"SUANLI_API_KEY": created["key"]})
    assert (me["email"], me["key_id"]) == (email, created["id"])
    cli("keys", "revoke", created["id"])
    revoked = cli("whoami", env={"SUANLI_API_KEY": created["key"]}, ok=False)
    assert revoked.exit_code == 1 and "SUANLI_API_KEY" in revoked.stderr


def test_files_upload_list_show(account: tuple[Cli, str]) -> None:
    cli, _ = account
    uploaded = cli.json("files", "upload", str(DATASET), "--purpose", "fine-tune")
    assert (uploaded["filename"], uploaded["bytes"], uploaded["status"]) == (
        DATASET.name,
        DATASET.stat().st_size,
        "processed",
    )
    assert uploaded["validation"]["examples"] == 20
    assert uploaded["id"] in [f["id"] for f in cli.json("files", "list")["data"]]
    assert cli.json("files", "show", uploaded["id"]) == uploaded
    shown = cli("files", "show", uploaded["id"]).stdout
    assert DATASET.name in shown and "openai_messages" in shown

    with_bar = cli("files", "upload", str(DATASET)).stdout  # the progress bar and the file's fields
    assert "uploading identity.jsonl" in with_bar and "processed" in with_bar
    deleted_id = cli.json("files", "upload", str(DATASET))["id"]
    cli("files", "delete", deleted_id)
    gone = cli("files", "show", deleted_id, ok=False)
    assert gone.exit_code == 1 and gone.stderr.startswith("error: ")


def test_a_job_submitted_and_followed_prints_its_log_and_final_status(account: tuple[Cli, str]) -> None:
    cli, _ = account
    followed = cli("jobs", "submit", "--name", "hello", "--command", "echo hi", "--env", "A=1", "--follow")
    log_lines = [line for line in followed.stdout.splitlines() if " | " in line]
    assert len(log_lines) == 1 and log_lines[0].endswith(" | hi"), followed.output
    assert "succeeded" in followed.stderr
    job_id = followed.stdout.split("submitted job ", 1)[1].split()[0]

    job = cli.json("jobs", "show", job_id)
    assert (job["name"], job["status"], job["env"]) == ("hello", "succeeded", {"A": "1"})
    assert job_id in [j["id"] for j in cli.json("jobs", "list")["data"]]
    assert cli("jobs", "logs", job_id, "--no-follow").stdout == "hi\n"
    assert " | hi" in cli("jobs", "logs", job_id).stdout

    failing = cli("jobs", "submit", "--command", "exit 3", "--follow", ok=False)
    assert failing.exit_code == 1 and "failed" in failing.stderr


def test_a_long_job_can_be_cancelled(account: tuple[Cli, str]) -> None:
    cli, _ = account
    job = cli.json("jobs", "submit", "--command", "sleep 60")
    cancelled = cli.json("jobs", "cancel", job["id"])
    assert cancelled["status"] in ("cancelled", "queued", "preparing", "running")
    end = json.loads(cli("jobs", "logs", job["id"], "--json").stdout.splitlines()[-1])
    assert (end["event"], end["status"]) == ("end", "cancelled")


def test_gpus(account: tuple[Cli, str]) -> None:
    cli, _ = account
    inventory = cli.json("gpus")
    assert [(t["gpu_type"], t["total"]) for t in inventory["by_type"]] == [("cpu", 2)]
    shown = cli("gpus").stdout
    assert "cpu" in shown and inventory["data"][0]["node_id"] in shown


def test_models_list_show_and_download(account: tuple[Cli, str], tmp_path: Path) -> None:
    cli, _ = account
    models = {m["id"]: m for m in cli.json("models", "list")["data"]}
    assert models[SEED_CHAT_MODEL]["state"] == "ready" and models[SEED_CHAT_MODEL]["is_default"]
    assert SEED_CHAT_MODEL in cli("models", "list").stdout
    assert cli.json("models", "show", SEED_CHAT_MODEL)["architecture"] == "LlamaForCausalLM"

    target = tmp_path / "config.json"
    cli("models", "download", SEED_CHAT_MODEL, "--path", "config.json", "-o", str(target))
    assert json.loads(target.read_text())["architectures"] == ["LlamaForCausalLM"]

    refused = cli("models", "register", str(tmp_path), ok=False)  # a user is no admin
    assert refused.exit_code == 1 and refused.stderr.startswith("error: ")
    missing = cli("models", "show", "no-such-model", ok=False)
    assert missing.exit_code == 1 and "Traceback" not in missing.output


ADMIN_EMAIL = "admin-cli@example.com"


@pytest.fixture(scope="module")
def platform_env() -> dict[str, str]:
    return {"SUANLI_ADMIN_EMAILS": ADMIN_EMAIL}


def test_an_admin_registers_a_local_checkpoint_which_is_checked_first(
    platform: Platform, tmp_path: Path
) -> None:
    admin = Cli(platform, tmp_path / "admin.json")
    admin("signup", "--email", ADMIN_EMAIL, "--password", PASSWORD)
    checkpoint = tmp_path / "my-qwen2"
    shutil.copytree(platform.models_dir / "tiny-qwen2", checkpoint)
    admin("models", "register", str(checkpoint), "--id", "my-qwen2")
    deadline = time.monotonic() + 30
    while (model := admin.json("models", "show", "my-qwen2"))["state"] == "registering":
        assert time.monotonic() < deadline, model
        time.sleep(0.3)
    assert model["state"] == "ready" and model["architecture"] == "Qwen2ForCausalLM", model

    not_a_model = tmp_path / "notes"
    not_a_model.mkdir()
    (not_a_model / "readme.txt").write_text("no weights here")
    refused = admin("models", "register", str(not_a_model), "--id", "not-a-model", ok=False)
    assert refused.exit_code == 1 and "config.json" in refused.stderr, refused.output
    assert "not-a-model" not in {m["id"] for m in admin.json("models", "list")["data"]}
