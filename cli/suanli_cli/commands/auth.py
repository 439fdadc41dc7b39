"""`suanli signup`, `login`, `logout`, `whoami`: the session token `login` stores in the config file."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from suanli_cli.client import ApiClient, open_client, stored_config
from suanli_cli.config import API_KEY_ENV, StoredConfig, config_path, save_config
from suanli_cli.output import JsonFlag, exclusive, fields, note, print_json

EmailOption = Annotated[
    str | None, typer.Option("--email", "-e", help="The account's e-mail. Default: asked for.")
]
PasswordOption = Annotated[
    str | None,
    typer.Option("--password", "-p", help="The account's password. Default: asked for, not echoed."),
]
LOGIN_EXAMPLES = """Examples:

  suanli login --email me@example.com
  suanli login --email me@example.com --code
  SUANLI_API_URL=http://gpu-box:8080 suanli login -e me@example.com"""


def _store_session(client: ApiClient, email: str, token: dict[str, Any], as_json: bool) -> None:
    path = config_path(os.environ)
    config = stored_config()
    config.api_url, config.access_token, config.email = client.api_url, token["access_token"], email
    save_config(path, config)
    if as_json:
        print_json(token)
        return
    minutes = int(token.get("expires_in", 0)) // 60
    valid = f"{minutes // 60} h" if minutes >= 120 else f"{minutes} min"
    note(f"signed in to {client.api_url} as {email} (session valid {valid}; saved in {path})")
    if os.environ.get(API_KEY_ENV):
        note(f"note: {API_KEY_ENV} is set and is used instead of this session until you unset it")


def login(
    email: EmailOption = None,
    password: PasswordOption = None,
    code: Annotated[
        bool, typer.Option("--code", help="Sign in without a password: e-mail me a one-time code.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Sign in with a password or an e-mailed one-time code, and remember the session."""
    exclusive(password=password is not None, code=code)
    email = email or typer.prompt("E-mail", err=True)
    with open_client() as client:
        if code:
            sent = client.post("/api/v1/auth/email-code", json={"email": email}, authenticated=False)
            minutes = max(1, int(sent.get("expires_in", 600)) // 60)
            typer.echo(f"A sign-in code was sent to {email} (valid {minutes} min).", err=True)
            secret = {"code": typer.prompt("Code", err=True).strip()}
        else:
            secret = {
                "password": password
                if password is not None
                else typer.prompt("Password", hide_input=True, err=True)
            }
        token = client.post("/api/v1/auth/login", json={"email": email, **secret}, authenticated=False)
        _store_session(client, email, token, json_output)


def signup(email: EmailOption = None, password: PasswordOption = None, json_output: JsonFlag = False) -> None:
    """Create an account on the server, then sign in to it and remember the session."""
    email = email or typer.prompt("E-mail", err=True)
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    with open_client() as client:
        user = client.post(
            "/api/v1/auth/signup", json={"email": email, "password": password}, authenticated=False
        )
        if not json_output:
            note(f"created account {user['email']} ({user['id']}, role {user['role']})")
        token = client.post(
            "/api/v1/auth/login", json={"email": email, "password": password}, authenticated=False
        )
        _store_session(client, email, token, json_output)


def logout() -> None:
    """Forget the stored session on this machine (API keys stay valid until revoked)."""
    path = config_path(os.environ)
    config = stored_config()
    if config.access_token is None:
        note("not signed in")
        return
    save_config(path, StoredConfig(api_url=config.api_url))
    note(f"signed out of {config.api_url}")


def whoami(json_output: JsonFlag = False) -> None:
    """Show who the CLI acts as, on which server, and with which credential."""
    with open_client() as client:
        me = client.get("/api/v1/auth/me")
        if json_output:
            print_json(me)
            return
        kind = f"API key {me['key_id']}" if me.get("key_id") else "session token"
        origin = f"from {API_KEY_ENV}" if client.connection.credential_source == API_KEY_ENV else "from login"
        fields(
            [
                ("email", me["email"]),
                ("user id", me["user_id"]),
                ("role", me["role"]),
                ("credential", f"{kind} ({origin})"),
                ("server", client.api_url),
            ]
        )
