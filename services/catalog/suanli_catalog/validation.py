"""Validation of fine-tune datasets as they stream in: OpenAI `messages`, alpaca and sharegpt rows,
as JSONL (checked line by line) or as one JSON array (read example by example), in bounded
memory either way. Reports the first
errors with their line numbers and counts examples and tokens with the target model's tokenizer
(every example of a small file; past the first few megabytes, a regular sample, extrapolated and
said so in the report).
"""

from __future__ import annotations

import codecs
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

MAX_ERRORS = 20

OPENAI_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "bot": "assistant",
    "chatgpt": "assistant",
    "tool": "tool",
    "function_call": "assistant",
    "observation": "tool",
}


class TokenCounter(Protocol):
    name: str
    # True when counting every example of a large file costs more than the upload itself, so
    # the validator counts a sample past the first megabytes (see `Sampling`).
    slow: bool

    def count_batch(self, texts: Sequence[str]) -> int:
        """The tokens of all `texts` together (each encoded on its own)."""
        ...


class ByteEstimate:
    """About four bytes of UTF-8 per token: what counts when no tokenizer is ready yet."""

    name = "bytes/4"
    slow = False

    def count(self, text: str) -> int:
        return math.ceil(len(text.encode()) / 4)

    def count_batch(self, texts: Sequence[str]) -> int:
        return sum(self.count(text) for text in texts)


class TokenizerCounter:
    """Counts with a model's own `tokenizer.json` (the Rust `tokenizers`, no torch needed)."""

    slow = True

    def __init__(self, name: str, tokenizer_json: Path) -> None:
        from tokenizers import Tokenizer

        self.name = name
        self._tokenizer = Tokenizer.from_file(str(tokenizer_json))

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    def count_batch(self, texts: Sequence[str]) -> int:
        # One call for many texts: the Rust side encodes them on all cores, without the GIL.
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return sum(len(encoding) for encoding in encodings)


@dataclass(frozen=True, slots=True)
class Sampling:
    """How a slow tokenizer counts a large file. Byte-level BPE runs at a few MB/s per core in
    `tokenizers`, an order of magnitude below the upload, so only the first `exact_chars` of text
    are counted in full; after that one example in `every`, and the total is extrapolated by
    characters (tokens per character is steady within a dataset: on bench/upload.py's 50 MB
    file the estimate is off by 66 tokens in 11 million). The report says when it estimates."""

    exact_chars: int = 1_000_000
    every: int = 32


SAMPLING = Sampling()
BATCH = 512  # texts per `count_batch`: large enough to spread over the cores


@dataclass
class _Stratum:
    chars: int = 0
    tokens: int = 0
    batch: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.chars += len(text)
        self.batch.append(text)

    def flush(self, counter: TokenCounter) -> None:
        if self.batch:
            self.tokens += counter.count_batch(self.batch)
            self.batch.clear()


class TokenTally:
    """The token count of the examples seen, counted in batches, sampled per `Sampling`: the
    exact count of the first examples plus the sample's tokens per character times the
    characters of the rest (the first examples are not pooled into the ratio: files often
    change as they go, and a pooled ratio would lean towards their start)."""

    def __init__(self, counter: TokenCounter, sampling: Sampling | None) -> None:
        self._counter = counter
        self._sampling = sampling if counter.slow else None
        self._exact = _Stratum()
        self._sampled = _Stratum()
        self._rest_chars = 0  # characters of the examples past the exact ones
        self._seen = 0

    def add(self, text: str) -> None:
        sampling = self._sampling
        if sampling is None or self._exact.chars < sampling.exact_chars:
            self._exact.add(text)
        else:
            self._seen += 1
            self._rest_chars += len(text)
            if self._seen % sampling.every == 1 or sampling.every == 1:
                self._sampled.add(text)
        for stratum in (self._exact, self._sampled):
            if len(stratum.batch) >= BATCH:
                stratum.flush(self._counter)

    @property
    def estimated(self) -> bool:
        return self._rest_chars > self._sampled.chars

    def total(self) -> int:
        self._exact.flush(self._counter)
        self._sampled.flush(self._counter)
        if not self.estimated or not self._sampled.chars:
            return self._exact.tokens + self._sampled.tokens
        return self._exact.tokens + round(self._sampled.tokens * self._rest_chars / self._sampled.chars)

    def describe(self) -> str:
        """The tokenizer's name, with how the count was made when it is an estimate."""
        if not self.estimated or self._sampling is None:
            return self._counter.name
        return f"{self._counter.name} (estimated from 1 in {self._sampling.every} examples)"


@dataclass(frozen=True, slots=True)
class ValidationIssue:
    line: int  # 1-based line (JSONL) or example number (JSON array); 0: the whole file
    message: str
    source: str = ""  # the data file inside an archive; "" for the uploaded file itself

    def __str__(self) -> str:
        where = " ".join(part for part in (self.source, f"line {self.line}" if self.line else "") if part)
        return f"{where}: {self.message}" if where else self.message


@dataclass
class DatasetReport:
    format: str = ""
    examples: int = 0
    tokens: int = 0
    tokenizer: str = ""
    errors: list[ValidationIssue] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        return "; ".join(str(issue) for issue in self.errors)


class RowError(ValueError):
    pass


def _text(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # OpenAI content parts: [{"type": "text", "text": "..."}]
        texts = [p.get("text") for p in value if isinstance(p, dict) and p.get("type") == "text"]
        strings = [t for t in texts if isinstance(t, str)]
        if texts and len(strings) == len(texts):
            return "\n".join(strings)
    raise RowError(f"{what} must be a string")


def _openai_messages(row: dict[str, Any]) -> list[str]:
    messages = row["messages"]
    if not isinstance(messages, list) or not messages:
        raise RowError("'messages' must be a non-empty list")
    texts: list[str] = []
    has_assistant = False
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise RowError(f"messages[{i}] must be an object")
        role = message.get("role")
        if role not in OPENAI_ROLES:
            raise RowError(f"messages[{i}] has role {role!r}; expected one of {sorted(OPENAI_ROLES)}")
        content = message.get("content")
        if role == "assistant" and content is None and message.get("tool_calls"):
            has_assistant = True
            texts.append(json.dumps(message["tool_calls"]))
            continue
        text = _text(content, f"messages[{i}].content")
        if role == "assistant" and text.strip():
            has_assistant = True
        texts.append(text)
    if not has_assistant:
        raise RowError("no assistant message: every example needs the assistant turn to learn from")
    return texts


def _alpaca(row: dict[str, Any]) -> list[str]:
    instruction = row.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        raise RowError("'instruction' must be a non-empty string")
    output = row.get("output")
    if output is None:
        raise RowError("missing 'output': every example needs the assistant turn to learn from")
    if not isinstance(output, str) or not output.strip():
        raise RowError("'output' (the assistant turn) must be a non-empty string")
    texts = [instruction, output]
    for key in ("input", "system"):
        if row.get(key) is not None:
            if not isinstance(row[key], str):
                raise RowError(f"'{key}' must be a string")
            texts.append(row[key])
    history = row.get("history")
    if history is not None:
        if not isinstance(history, list):
            raise RowError("'history' must be a list of [instruction, response] pairs")
        for i, pair in enumerate(history):
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(t, str) for t in pair)):
                raise RowError(f"history[{i}] must be a pair of strings [instruction, response]")
            texts.extend(pair)
    return texts


def _sharegpt(row: dict[str, Any]) -> list[str]:
    turns = row["conversations"]
    if not isinstance(turns, list) or not turns:
        raise RowError("'conversations' must be a non-empty list")
    texts: list[str] = []
    has_assistant = False
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise RowError(f"conversations[{i}] must be an object")
        speaker = turn.get("from")
        role = SHAREGPT_ROLES.get(str(speaker))
        if role is None:
            raise RowError(
                f"conversations[{i}] has 'from' {speaker!r}; expected one of {sorted(SHAREGPT_ROLES)}"
            )
        value = turn.get("value")
        if not isinstance(value, str):
            raise RowError(f"conversations[{i}].value must be a string")
        if role == "assistant" and value.strip():
            has_assistant = True
        texts.append(value)
    if not has_assistant:
        raise RowError("no 'gpt' turn: every conversation needs the assistant turn to learn from")
    return texts


RowCheck = Callable[[Any], tuple[str, list[str]]]


def check_row(row: Any) -> tuple[str, list[str]]:
    """The row's format and the texts of its turns; raises `RowError` with the reason."""
    if not isinstance(row, dict):
        raise RowError(f"expected a JSON object, got {type(row).__name__}")
    if "messages" in row:
        return "openai_messages", _openai_messages(row)
    if "conversations" in row:
        return "sharegpt", _sharegpt(row)
    if "instruction" in row:
        return "alpaca", _alpaca(row)
    raise RowError(
        "unknown format: expected 'messages' (OpenAI), 'instruction'/'output' (alpaca) "
        "or 'conversations' (sharegpt)"
    )


class JsonSyntaxError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


_WHITESPACE = re.compile(r"[ \t\n\r]*")
# Past this many characters before the end of the text read so far, a decode error is the file's
# fault, not a cut-off example (a cut-off `\uXXXX` escape fails a few characters early).
_TAIL = 8


class JsonArrayReader:
    """One JSON array read example by example as its bytes arrive: memory holds one example and
    one chunk, never the whole file. `feed` gives the examples completed by each chunk (numbered
    from 1) and raises `JsonSyntaxError` with the file's line where the text stops being JSON."""

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._decoder = json.JSONDecoder()
        self._text = ""  # decoded, not yet consumed
        self._line = 1  # the file's line where `_text` starts
        self._column = 0  # characters of that line before `_text`
        self._expect = "["  # "[", "first" (an example or "]"), "example", "," (or "]"), "end"
        self._number = 0
        self._wait_for = 0  # an example cut off by the chunk: parse again once this much is there

    def feed(self, chunk: bytes, final: bool = False) -> list[tuple[int, Any]]:
        try:
            self._text += self._utf8.decode(chunk, final)
        except UnicodeDecodeError as exc:
            line = self._line + self._text.count("\n") + exc.object[: exc.start].count(b"\n")
            raise JsonSyntaxError(line, "not valid UTF-8 text") from None
        rows: list[tuple[int, Any]] = []
        text, pos = self._text, 0
        try:
            pos = self._consume(text, final, rows)
        finally:
            newlines = text.count("\n", 0, pos)
            self._line += newlines
            self._column = pos - text.rfind("\n", 0, pos) - 1 if newlines else self._column + pos
            self._text = text[pos:]  # once per chunk: trimming per example would copy the chunk often
        return rows

    def finish(self) -> list[tuple[int, Any]]:
        rows = self.feed(b"", final=True)
        if self._expect != "end":
            line = self._line + self._text.count("\n")
            raise JsonSyntaxError(line, "the file ends before its list is closed")
        return rows

    def _error(self, text: str, pos: int, message: str) -> JsonSyntaxError:
        return JsonSyntaxError(self._line + text.count("\n", 0, pos), message)

    def _consume(self, text: str, final: bool, rows: list[tuple[int, Any]]) -> int:
        pos = 0
        while True:
            pos = _WHITESPACE.match(text, pos).end()  # type: ignore[union-attr]
            if pos == len(text):
                return pos
            char = text[pos]
            if self._expect == "[":
                self._expect = "first"  # the validator only calls a file JSON when it starts with "["
                pos += 1
            elif self._expect in ("first", ",") and char == "]":
                self._expect = "end"
                pos += 1
            elif self._expect == ",":
                if char != ",":
                    message = f"invalid JSON: expected ',' or ']' after example {self._number}"
                    raise self._error(text, pos, message)
                self._expect = "example"
                pos += 1
            elif self._expect == "end":
                raise self._error(text, pos, "invalid JSON: extra data after the list")
            else:
                if not final and len(text) - pos < self._wait_for:
                    return pos
                try:
                    row, end = self._decoder.raw_decode(text, pos)
                except json.JSONDecodeError as exc:
                    cut_off = exc.pos >= len(text) - _TAIL or exc.msg.startswith("Unterminated string")
                    if cut_off and not final:
                        self._wait_for = 2 * (len(text) - pos)  # doubling: linear in a long example
                        return pos
                    column = exc.colno + (0 if "\n" in text[: exc.pos] else self._column)
                    message = f"invalid JSON: {exc.msg} at column {column}"
                    raise self._error(text, exc.pos, message) from None
                if end == len(text) and not final:  # a number may go on in the next chunk
                    return pos
                self._wait_for = 0
                self._number += 1
                rows.append((self._number, row))
                self._expect = ","
                pos = end


class DatasetValidator:
    """Fed the file's bytes chunk by chunk; `finish` gives the report. JSONL is checked line by
    line as it arrives, a JSON array (a file starting with '[') example by example. `check` reads
    one row (default: any of the three formats, told apart by their keys); `source` names the
    file in the errors when it is not the upload itself (a member of an archive)."""

    def __init__(
        self,
        counter: TokenCounter,
        max_errors: int = MAX_ERRORS,
        sampling: Sampling | None = SAMPLING,
        *,
        check: RowCheck = check_row,
        source: str = "",
    ) -> None:
        self._tally = TokenTally(counter, sampling)
        self._max_errors = max_errors
        self._check = check
        self._source = source
        self._report = DatasetReport(tokenizer=counter.name)
        self._pending = bytearray()
        self._line = 0
        self._mode: str | None = None  # "jsonl" | "json", fixed by the first non-blank byte
        self._array: JsonArrayReader | None = None  # the JSON mode's reader, until it fails
        self._saw_bytes = False

    def _error(self, line: int, message: str) -> None:
        if len(self._report.errors) < self._max_errors:
            self._report.errors.append(ValidationIssue(line, message, self._source))

    def _row(self, line: int, row: Any) -> None:
        try:
            fmt, texts = self._check(row)
        except RowError as exc:
            self._error(line, str(exc))
            return
        if not self._report.format:
            self._report.format = fmt
        elif fmt != self._report.format:
            self._error(line, f"row is {fmt} but the file is {self._report.format}; use one format per file")
            return
        self._report.examples += 1
        if not self._report.errors:  # counting stops once the file is known to be refused
            self._tally.add("\n".join(texts))

    def _jsonl_line(self, raw: bytes) -> None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._line += 1
            self._error(
                self._line, f"not valid UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
            )
            return
        self._jsonl_text(text)

    def _jsonl_text(self, text: str) -> None:
        self._line += 1
        if not text.strip():
            return
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            self._error(self._line, f"invalid JSON: {exc.msg} at column {exc.colno}")
            return
        self._row(self._line, row)

    def _json(self, chunk: bytes, final: bool = False) -> None:
        if self._array is None:  # the JSON was broken earlier: the rest cannot be read
            return
        try:
            rows = self._array.finish() if final else self._array.feed(chunk)
        except JsonSyntaxError as exc:
            self._array = None
            self._error(exc.line, str(exc))
            return
        for number, row in rows:
            self._row(number, row)

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        self._saw_bytes = True
        if self._mode == "json":
            self._json(chunk)
            return
        self._pending += chunk
        if self._mode is None:
            stripped = self._pending.lstrip()
            if not stripped:
                return
            self._mode = "json" if stripped.startswith(b"[") else "jsonl"
            if self._mode == "json":
                self._array = JsonArrayReader()
                head, self._pending = bytes(self._pending), bytearray()
                self._json(head)
                return
        end = self._pending.rfind(b"\n")
        if end < 0:
            return
        block = bytes(self._pending[:end])
        del self._pending[: end + 1]
        try:  # the whole block at once: one decode instead of one per line
            lines = block.decode("utf-8").split("\n")
        except UnicodeDecodeError:  # line by line, to name the line that is not UTF-8
            for raw in block.split(b"\n"):
                self._jsonl_line(raw)
            return
        for text in lines:
            self._jsonl_text(text)

    def finish(self) -> DatasetReport:
        if self._mode == "json":
            self._json(b"", final=True)
        elif self._pending:
            self._jsonl_line(bytes(self._pending))
        self._pending = bytearray()
        if not self._saw_bytes:
            self._error(0, "the file is empty")
        elif self._report.examples == 0 and not self._report.errors:
            self._error(0, "the file holds no examples")
        if self._report.valid:
            self._report.tokens = self._tally.total()
            self._report.tokenizer = self._tally.describe()
        return self._report
