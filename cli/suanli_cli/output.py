"""How the API commands print: raw JSON for scripts (`--json`), rich tables for people, and every
failure as one `error: ...` line on stderr with exit code 1 (no traceback)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from suanli_cli.client import ApiError
from suanli_cli.config import ConfigError

PIPED_WIDTH = 200
JsonFlag = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print the API's JSON instead of text, for scripts (progress goes to stderr).",
    ),
]


class SuanliGroup(TyperGroup):
    """The root command group: API and config failures end the command here, in one line."""

    def invoke(self, ctx: Any) -> Any:  # a typer Context (typer vendors click: its type is private)
        try:
            return super().invoke(ctx)
        except (ApiError, ConfigError) as exc:
            fail(str(exc))


def console() -> Console:
    # Made on each use, not at import: CliRunner swaps sys.stdout per invocation.
    shown = Console(highlight=False, soft_wrap=False)
    if not shown.is_terminal:
        # Piped into grep or a file: keep a table's rows whole rather than fold them at 80 columns.
        shown.width = PIPED_WIDTH
    return shown


def error_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def progress_console(json_output: bool) -> Console:
    """Where progress and notes go: stdout for people, stderr under --json, so that stdout holds
    nothing but the JSON a script parses."""
    return error_console() if json_output else console()


def fail(message: str, code: int = 1) -> NoReturn:
    """Ends the command with one `error: ...` line on stderr."""
    error_console().print(Text.assemble(("error: ", "bold red"), message))
    raise typer.Exit(code)


def exclusive(**flags: bool) -> None:
    """Refuses options that cannot go together, before any request (exit 2, as for usage errors)."""
    given = [f"--{name.replace('_', '-')}" for name, on in flags.items() if on]
    if len(given) > 1:
        fail(f"give {' or '.join(given)}, not both", code=2)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def print_json_line(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False), nl=True)


def when(seconds: int | None) -> str:
    if not seconds:
        return "-"
    return datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def table(columns: Sequence[str], rows: Iterable[Sequence[object]], *, title: str | None = None) -> None:
    """A table whose cells never get cut: ids must stay copyable."""
    cells = [["-" if cell is None or cell == "" else str(cell) for cell in row] for row in rows]
    shown = Table(title=title, title_justify="left", show_edge=False, header_style="bold")
    for index, column in enumerate(columns):
        if index == 0:  # the id: never folded, so it can be copied whole
            width = max([len(column), *(len(row[0]) for row in cells)])
            shown.add_column(column, no_wrap=True, min_width=width)
        else:
            shown.add_column(column, overflow="fold")
    for row in cells:
        shown.add_row(*row)
    console().print(shown)


def fields(pairs: Sequence[tuple[str, object]]) -> None:
    """One object as aligned `name  value` lines."""
    shown = Table.grid(padding=(0, 2))
    shown.add_column(style="bold")
    shown.add_column(overflow="fold")
    for name, value in pairs:
        shown.add_row(name, "-" if value is None or value == "" else str(value))
    console().print(shown)


def note(text: str, out: Console | None = None) -> None:
    (out or console()).print(Text(text, style="green"))
