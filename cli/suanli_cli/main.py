"""The `suanli` typer app: each command group lives in its own module and is registered here."""

from __future__ import annotations

import typer

from suanli_cli.commands import (
    auth,
    deployments,
    files,
    fine_tunes,
    gpus,
    jobs,
    keys,
    knowledge_bases,
    models,
    usage,
)
from suanli_cli.launcher.command import up
from suanli_cli.output import SuanliGroup

GOLDEN_PATH = """Example: from a dataset to a chat with your fine-tune

  suanli signup --email me@example.com
  suanli files upload train.jsonl
  suanli fine-tunes create --model smollm2-135m-instruct --file FILE_ID --suffix mine --follow
  suanli deployments create FINE_TUNED_MODEL --wait
  suanli chat "Hello!" --model FINE_TUNED_MODEL"""

app = typer.Typer(
    name="suanli",
    cls=SuanliGroup,
    no_args_is_help=True,
    add_completion=False,
    epilog=GOLDEN_PATH,
)


@app.callback()
def suanli() -> None:
    """Suanli: a self-hosted LLM training and inference cloud.

    `suanli up` runs the platform on this machine; every other command drives its API at
    SUANLI_API_URL (default http://127.0.0.1:8080) as the account of `suanli login`, or with the
    API key in SUANLI_API_KEY. The session is kept in $SUANLI_CONFIG (default
    ~/.config/suanli/config.json). Every command that shows something takes --json for scripts.
    """


app.command(name="up")(up)
app.command(name="signup")(auth.signup)
app.command(name="login", epilog=auth.LOGIN_EXAMPLES)(auth.login)
app.command(name="logout")(auth.logout)
app.command(name="whoami")(auth.whoami)
app.add_typer(keys.app, name="keys")
app.add_typer(models.app, name="models")
app.add_typer(files.app, name="files")
app.add_typer(jobs.app, name="jobs")
app.add_typer(fine_tunes.app, name="fine-tunes")
app.command(name="gpus")(gpus.gpus)
app.add_typer(deployments.app, name="deployments")
app.add_typer(knowledge_bases.app, name="kb")
app.command(name="chat", epilog=deployments.CHAT_EXAMPLES)(deployments.chat)
app.command(name="usage")(usage.usage)
app.command(name="balance")(usage.balance)
app.command(name="quotas")(usage.quotas)


if __name__ == "__main__":
    app()
