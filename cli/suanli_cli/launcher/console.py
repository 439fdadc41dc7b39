"""How `suanli up` prints: child lines prefixed with their name, the launcher's notes, the ready line."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

_COLORS = ("cyan", "green", "magenta", "yellow", "blue", "bright_cyan", "bright_green", "bright_magenta")


class PrefixedConsole:
    """Writes `name | line`, names padded to one width and given a color each when on a terminal."""

    def __init__(self, console: Console | None = None, name_width: int = 8) -> None:
        # soft_wrap: a long JSON log line stays one line (rich would break it at the terminal width).
        self._console = console or Console(soft_wrap=True, highlight=False)
        self._name_width = name_width
        self._colors: dict[str, str] = {}

    def line(self, child: str, text: str, stream: str) -> None:
        self._console.print(Text.assemble(self._prefix(child), text))

    def note(self, child: str, text: str) -> None:
        self._console.print(Text.assemble(self._prefix(child), (text, "dim")))

    def ready(self, text: str) -> None:
        self._console.print(Text(text, style="bold green"))

    def error(self, text: str) -> None:
        self._console.print(Text(text, style="bold red"))

    def _prefix(self, child: str) -> Text:
        color = self._colors.setdefault(child, _COLORS[len(self._colors) % len(_COLORS)])
        return Text(f"{child:<{self._name_width}} | ", style=color)
