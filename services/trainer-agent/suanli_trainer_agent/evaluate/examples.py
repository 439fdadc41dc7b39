"""The held-out file read into evaluation examples: a prompt (the messages before the last assistant
reply), the reference (that reply), and for multiple-choice rows their choices and answer. Rows are
read by the fine-tune runner's own readers, so both accept the same formats."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suanli_trainer_agent.evaluate.config import EvaluationError
from suanli_trainer_agent.evaluate.metrics import MultipleChoice, answer_index
from suanli_trainer_agent.finetune.data import SHAREGPT_ROLES, Message, read_rows, to_conversation
from suanli_trainer_agent.finetune.errors import FineTuneError


@dataclass(frozen=True, slots=True)
class EvalExample:
    prompt: list[Message]
    reference: str
    question: MultipleChoice | None = None

    @property
    def prompt_text(self) -> str:
        """The prompt's last message (the question, usually), as samples show it."""
        return self.prompt[-1]["content"]


def load_examples(path: Path, limit: int) -> list[EvalExample]:
    """The file's first `limit` examples; EvaluationError names the row that cannot be read."""
    try:
        rows = read_rows(path)
    except FineTuneError as exc:
        raise EvaluationError(str(exc)) from None
    examples = []
    for number, row in rows[:limit]:
        try:
            examples.append(to_example(row))
        except ValueError as exc:
            raise EvaluationError(f"{path.name} example {number}: {exc}") from None
    if not examples:
        raise EvaluationError(f"{path.name} holds no examples")
    return examples


def to_example(row: Any) -> EvalExample:
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    question = _question(row)
    if question is not None and not _has_reply(row):
        # A multiple-choice row needs no written reply: the right choice is the reference.
        row = _with_reply(row, question.choices[question.answer])
    messages = to_conversation(row).messages
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    if last == 0:
        raise ValueError("the reference reply has no prompt before it")
    return EvalExample(messages[:last], messages[last]["content"], question)


def _question(row: dict[str, Any]) -> MultipleChoice | None:
    if "choices" not in row:
        return None
    choices = row["choices"]
    if not (isinstance(choices, list) and len(choices) >= 2) or not all(
        isinstance(c, str) and c.strip() for c in choices
    ):
        raise ValueError("'choices' must be a list of at least two non-empty strings")
    if len(choices) > 26:
        raise ValueError("'choices' may hold 26 choices at most (A to Z)")
    if "answer" not in row:
        raise ValueError("a row with 'choices' needs an 'answer' (index, letter or text)")
    return MultipleChoice(tuple(choices), answer_index(row["answer"], choices))


def _has_reply(row: dict[str, Any]) -> bool:
    if isinstance(row.get("messages"), list):
        return any(isinstance(m, dict) and m.get("role") == "assistant" for m in row["messages"])
    if isinstance(row.get("conversations"), list):
        return any(
            isinstance(t, dict) and SHAREGPT_ROLES.get(str(t.get("from"))) == "assistant"
            for t in row["conversations"]
        )
    output = row.get("output")
    return isinstance(output, str) and bool(output.strip())


def _with_reply(row: dict[str, Any], reply: str) -> dict[str, Any]:
    if isinstance(row.get("messages"), list):
        return {**row, "messages": [*row["messages"], {"role": "assistant", "content": reply}]}
    if isinstance(row.get("conversations"), list):
        return {**row, "conversations": [*row["conversations"], {"from": "gpt", "value": reply}]}
    return {**row, "output": reply}
