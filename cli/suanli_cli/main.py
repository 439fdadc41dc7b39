"""The `suanli` typer app: each command group lives in its own module and is registered here."""

from __future__ import annotations

import typer

from suanli_cli.launcher.command import up

app = typer.Typer(
    name="suanli",
    help="Suanli: a self-hosted LLM training and inference cloud.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def suanli() -> None:
    """Suanli: a self-hosted LLM training and inference cloud."""
    # A callback keeps `suanli` a command group while `up` is its only command.


app.command(name="up")(up)


if __name__ == "__main__":
    app()
