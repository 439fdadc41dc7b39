"""Every command of the `suanli` tree explains itself: a first line that says what it does, a help
text on every argument and option, the default of an option that shows none, and a `--help` that
renders. A new command or option without help fails here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from suanli_cli.main import app

ROOT = typer.main.get_command(app)


def walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command of the tree with its path of names, groups included (typer's click types are
    private: they are read by their attributes)."""
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from walk(sub, (*path, name))


COMMANDS = list(walk(ROOT))
IDS = [" ".join(path) or "suanli" for path, _ in COMMANDS]


def first_line(command: Any) -> str:
    return (command.help or "").strip().split("\n\n")[0].strip()


def test_the_tree_holds_the_whole_golden_path() -> None:
    names = set(IDS)
    for expected in (
        "signup",
        "login",
        "files upload",
        "fine-tunes create",
        "fine-tunes watch",
        "deployments create",
        "deployments show",
        "deployments delete",
        "chat",
    ):
        assert expected in names


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_every_command_says_what_it_does(path: tuple[str, ...], command: Any) -> None:
    line = first_line(command)
    assert line, f"`suanli {' '.join(path)}` has no help text"
    assert line[0].isupper() and line.endswith("."), f"first line should be a sentence: {line!r}"
    assert len(line) <= 110, f"first line too long for the command list: {line!r}"


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_every_argument_and_option_has_help(path: tuple[str, ...], command: Any) -> None:
    for param in command.params:
        name = "/".join(getattr(param, "opts", [])) or param.name
        text = (getattr(param, "help", None) or "").strip()
        assert text, f"`suanli {' '.join(path)}`: {name} has no help text"
        assert text.endswith((".", ")")), f"`suanli {' '.join(path)}` {name}: {text!r}"
        shows_no_default = param.default is None or getattr(param, "show_default", True) is False
        if getattr(param, "param_type_name", "") == "option" and not param.required and shows_no_default:
            # typer prints `[default: x]` for a set default; for an unset one the help says it.
            assert "default" in text.lower(), f"`suanli {' '.join(path)}` {name}: say the default"


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=IDS)
def test_every_help_page_renders(path: tuple[str, ...], command: Any) -> None:
    shown = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert first_line(command).split()[0] in shown.stdout
    for param in command.params:
        for opt in getattr(param, "opts", []):
            if opt.startswith("--"):
                assert opt in shown.stdout, f"{opt} missing from `suanli {' '.join(path)} --help`"


@pytest.mark.parametrize(
    "path",
    [
        (),
        ("login",),
        ("chat",),
        ("files", "upload"),
        ("fine-tunes", "create"),
        ("deployments", "create"),
        ("jobs", "submit"),
        ("kb", "ask"),
    ],
)
def test_the_main_commands_show_examples(path: tuple[str, ...]) -> None:
    shown = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"}).stdout
    assert "Example" in shown
    examples = shown.split("Example", 1)[1]
    assert f"suanli {' '.join(path)}".strip() in examples or not path
    assert "suanli " in examples
