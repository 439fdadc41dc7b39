"""`suanli keys`: API keys for scripts and OpenAI clients (the secret is shown once, at creation)."""

from __future__ import annotations

from typing import Annotated

import typer

from suanli_cli.client import open_client
from suanli_cli.output import JsonFlag, fields, note, print_json, table, when

app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="A label to recognise the key by.")],
    json_output: JsonFlag = False,
) -> None:
    """Create an API key and print its secret (shown this once only)."""
    with open_client() as client:
        key = client.post("/api/v1/api-keys", json={"name": name})
    if json_output:
        print_json(key)
        return
    fields([("id", key["id"]), ("name", key["name"]), ("key", key["key"])])
    note("Copy the key now: it is not shown again. Use it as SUANLI_API_KEY or an OpenAI client's api_key.")


@app.command("list")
def list_keys(json_output: JsonFlag = False) -> None:
    """List your API keys (never their secrets)."""
    with open_client() as client:
        keys = client.get("/api/v1/api-keys")
    if json_output:
        print_json(keys)
        return
    table(
        ["ID", "NAME", "PREFIX", "CREATED", "LAST USED", "REVOKED"],
        (
            [
                k["id"],
                k["name"],
                k["prefix"],
                when(k["created_at"]),
                when(k["last_used_at"]),
                when(k["revoked_at"]),
            ]
            for k in keys["data"]
        ),
    )


@app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id (see `suanli keys list`).")],
    json_output: JsonFlag = False,
) -> None:
    """Revoke an API key: requests made with it are refused from now on."""
    with open_client() as client:
        key = client.delete(f"/api/v1/api-keys/{key_id}")
    if json_output:
        print_json(key)
        return
    note(f"revoked {key['id']} ({key['name']})")
