"""Dataset validation on its own: every accepted format, every refused input, token counting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from suanli_catalog.validation import (
    ByteEstimate,
    DatasetReport,
    DatasetValidator,
    Sampling,
    TokenizerCounter,
)

OPENAI = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
ALPACA = {
    "instruction": "Add",
    "input": "1 and 2",
    "output": "3",
    "system": "Be brief",
    "history": [["q", "a"]],
}
SHAREGPT = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]}


def jsonl(*rows: object) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def validate(data: bytes, chunk: int = 7) -> DatasetReport:
    validator = DatasetValidator(ByteEstimate())
    for start in range(0, len(data), chunk):  # small chunks: lines split across chunks
        validator.feed(data[start : start + chunk])
    return validator.finish()


@pytest.mark.parametrize(
    ("row", "fmt"), [(OPENAI, "openai_messages"), (ALPACA, "alpaca"), (SHAREGPT, "sharegpt")]
)
def test_each_format_is_accepted_as_jsonl_and_as_json(row: dict[str, object], fmt: str) -> None:
    for data in (jsonl(row, row, row), json.dumps([row, row, row], indent=2).encode()):
        report = validate(data)
        assert report.valid, report.errors
        assert (report.format, report.examples) == (fmt, 3)
        assert report.tokens > 0 and report.tokenizer == "bytes/4"


def test_last_line_without_newline_and_blank_lines_count() -> None:
    report = validate(jsonl(OPENAI) + b"\n\n" + json.dumps(OPENAI).encode())
    assert report.valid and report.examples == 2


def test_non_utf8_line_is_refused_with_its_line_number() -> None:
    report = validate(jsonl(OPENAI) + b'{"messages": "\xff\xfe"}\n')
    assert not report.valid
    assert report.errors[0].line == 2 and "UTF-8" in report.errors[0].message


def test_broken_json_line_is_refused_with_its_line_number() -> None:
    report = validate(jsonl(OPENAI, OPENAI) + b'{"messages": [\n' + jsonl(OPENAI))
    assert [(e.line, e.message.split(":")[0]) for e in report.errors] == [(3, "invalid JSON")]
    assert "line 3: invalid JSON" in report.summary()


@pytest.mark.parametrize(
    "row",
    [
        {"messages": [{"role": "user", "content": "Hi"}]},
        {"instruction": "Add 1 and 2"},
        {"conversations": [{"from": "human", "value": "Hi"}]},
    ],
)
def test_row_missing_the_assistant_turn_is_refused(row: dict[str, object]) -> None:
    report = validate(jsonl(row))
    assert not report.valid and report.errors[0].line == 1
    assert "assistant turn" in report.errors[0].message


@pytest.mark.parametrize("data", [b"", b"\n\n  \n"])
def test_empty_file_is_refused(data: bytes) -> None:
    report = validate(data)
    assert not report.valid and report.errors[0].line == 0
    assert "empty" in report.errors[0].message or "no examples" in report.errors[0].message


def test_bad_rows_give_reasons_and_at_most_20_errors() -> None:
    rows = [{"messages": [{"role": "wizard", "content": "x"}]}, {"foo": 1}, [1, 2], SHAREGPT]
    report = validate(jsonl(OPENAI, *rows))
    messages = [(e.line, e.message) for e in report.errors]
    assert messages[0][0] == 2 and "role 'wizard'" in messages[0][1]
    assert messages[1][0] == 3 and "unknown format" in messages[1][1]
    assert messages[2][0] == 4 and "JSON object" in messages[2][1]
    assert messages[3][0] == 5 and "one format per file" in messages[3][1]
    many = validate(b"{broken\n" * 50)
    assert len(many.errors) == 20 and many.errors[-1].line == 20


def test_json_array_errors_name_the_example() -> None:
    report = validate(json.dumps([OPENAI, {"instruction": "x"}]).encode())
    assert report.errors[0].line == 2
    assert not validate(b"[1, 2").valid


def test_tokens_are_counted_with_the_model_tokenizer(tiny_model_dir: Path) -> None:
    counter = TokenizerCounter("suanli-tiny-qwen2", tiny_model_dir / "tokenizer.json")
    validator = DatasetValidator(counter)
    validator.feed(jsonl(OPENAI, OPENAI))
    report = validator.finish()
    assert report.valid and report.tokenizer == "suanli-tiny-qwen2"
    assert report.tokens == 2 * counter.count("Hi\nHello!")


def test_errors_keep_their_line_numbers_when_lines_arrive_in_large_blocks() -> None:
    data = jsonl(OPENAI) + b'{"messages": "\xff"}\n' + jsonl(OPENAI) + b"{broken\n" + jsonl(OPENAI)
    for chunk in (len(data), 65536, 3):
        report = validate(data, chunk=chunk)
        assert [(e.line, e.message.split(" ")[0]) for e in report.errors] == [(2, "not"), (4, "invalid")]


def test_count_batch_counts_each_text_as_count_does(tiny_model_dir: Path) -> None:
    counter = TokenizerCounter("suanli-tiny-qwen2", tiny_model_dir / "tokenizer.json")
    texts = ["Hi\nHello!", "", "What is 12 times 7?\n84.", "日本語のテキスト"]
    assert counter.count_batch(texts) == sum(counter.count(t) for t in texts) > 0
    assert ByteEstimate().count_batch(texts) == sum(ByteEstimate().count(t) for t in texts)


def test_large_files_count_a_sample_and_say_so(tiny_model_dir: Path) -> None:
    counter = TokenizerCounter("suanli-tiny-qwen2", tiny_model_dir / "tokenizer.json")
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"What is {i} times {i % 7}?"},
                {
                    "role": "assistant",
                    "content": f"{i} times {i % 7} is {i * (i % 7)}" + " and so on" * (i % 5),
                },
            ]
        }
        for i in range(3000)
    ]
    data = jsonl(*rows)
    exact = DatasetValidator(counter, sampling=None)
    sampled = DatasetValidator(counter, sampling=Sampling(exact_chars=2000, every=8))
    for validator in (exact, sampled):
        for start in range(0, len(data), 65536):
            validator.feed(data[start : start + 65536])
    exact_report, sampled_report = exact.finish(), sampled.finish()
    assert exact_report.tokenizer == "suanli-tiny-qwen2" and sampled_report.examples == 3000
    assert sampled_report.tokenizer == "suanli-tiny-qwen2 (estimated from 1 in 8 examples)"
    assert abs(sampled_report.tokens - exact_report.tokens) < 0.02 * exact_report.tokens


def test_a_small_file_is_counted_exactly_with_the_default_sampling(tiny_model_dir: Path) -> None:
    counter = TokenizerCounter("suanli-tiny-qwen2", tiny_model_dir / "tokenizer.json")
    validator = DatasetValidator(counter)
    validator.feed(jsonl(*[OPENAI] * 1000))
    report = validator.finish()
    assert report.tokenizer == "suanli-tiny-qwen2" and report.tokens == 1000 * counter.count("Hi\nHello!")


def test_json_array_is_read_example_by_example_with_file_lines_in_syntax_errors() -> None:
    good = json.dumps([OPENAI] * 50, indent=2).encode()
    for chunk in (1, 7, 4096, len(good)):
        report = validate(good, chunk=chunk)
        assert report.valid and report.examples == 50
    broken = b'[\n  {"instruction": "a", "output": "b"},\n  {"instruction": x}\n]'
    for chunk in (1, 5, len(broken)):
        errors = [str(e) for e in validate(broken, chunk=chunk).errors]
        assert errors == ["line 3: invalid JSON: Expecting value at column 19"]
    assert "ends before its list is closed" in validate(b'[{"instruction": "a", "output": "b"}').summary()
