"""Training examples: OpenAI `messages`, alpaca and sharegpt rows (JSONL or a JSON array) read into
chat conversations, then tokenized with the model's own chat template with the loss on assistant
turns only. The row formats are the ones the catalog validates (suanli_catalog.validation); the
runner has its own reader because it runs on a node without the catalog package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from suanli_trainer_agent.finetune.errors import FineTuneError

IGNORE_INDEX = -100  # what torch's cross-entropy (and so transformers' causal-LM loss) skips

Message = dict[str, str]

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


@dataclass(frozen=True, slots=True)
class Conversation:
    messages: list[Message]
    # Indices of assistant messages to learn from (OpenAI's per-message `weight: 0` leaves one out).
    trained: frozenset[int]


@dataclass(frozen=True, slots=True)
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX except on assistant tokens

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


class ChatTokenizer(Protocol):
    """The part of a Hugging Face tokenizer the formatting needs."""

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...

    def encode(self, text: str, **kwargs: Any) -> list[int]: ...


# ---- reading rows ---------------------------------------------------------------------------------


def dataset_file(path: Path) -> Path:
    """The file a dataset path names: itself, or the one data file in a staged folder."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise FineTuneError(f"dataset {str(path)!r} does not exist")
    for name in ("train.jsonl", "train.json"):
        if (path / name).is_file():
            return path / name
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".jsonl", ".json"))
    if len(files) != 1:
        raise FineTuneError(
            f"dataset folder {str(path)!r} must hold train.jsonl or exactly one .jsonl/.json file"
        )
    return files[0]


def read_rows(path: Path) -> list[tuple[int, Any]]:
    """(line or example number, row) for a JSONL file or a file holding one JSON array."""
    path = dataset_file(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FineTuneError(f"cannot read {str(path)!r}: {exc}") from None
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FineTuneError(f"{path.name}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
        return list(enumerate(rows, start=1))
    out: list[tuple[int, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise FineTuneError(f"{path.name} line {number}: invalid JSON: {exc.msg}") from None
    return out


def load_conversations(path: Path) -> list[Conversation]:
    conversations = []
    for number, row in read_rows(path):
        try:
            conversations.append(to_conversation(row))
        except ValueError as exc:
            raise FineTuneError(f"{Path(path).name} example {number}: {exc}") from None
    if not conversations:
        raise FineTuneError(f"{Path(path).name} holds no examples")
    return conversations


def to_conversation(row: Any) -> Conversation:
    """One row in any of the three formats as a conversation; ValueError says what is wrong."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    if "messages" in row:
        conversation = _openai(row["messages"])
    elif "conversations" in row:
        conversation = _sharegpt(row["conversations"], row.get("system"))
    elif "instruction" in row:
        conversation = _alpaca(row)
    else:
        raise ValueError("unknown format: expected 'messages', 'conversations' or 'instruction'/'output'")
    if not conversation.trained:
        raise ValueError("no assistant turn to learn from")
    return conversation


def _text(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # OpenAI content parts
        texts = [p.get("text") for p in value if isinstance(p, dict) and p.get("type") == "text"]
        if texts and all(isinstance(t, str) for t in texts):
            return "\n".join(str(t) for t in texts)
    raise ValueError(f"{what} must be a string")


def _openai(messages: Any) -> Conversation:
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list")
    out: list[Message] = []
    trained: set[int] = set()
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ValueError(f"messages[{i}] must be an object with a role")
        role = "system" if message["role"] == "developer" else message["role"]
        content = message.get("content")
        if role == "assistant" and content is None and message.get("tool_calls"):
            text = json.dumps(message["tool_calls"], ensure_ascii=False)  # templates without tool support
        else:
            text = _text(content, f"messages[{i}].content")
        if role == "assistant" and message.get("weight", 1) != 0 and text.strip():
            trained.add(len(out))
        out.append({"role": role, "content": text})
    return Conversation(out, frozenset(trained))


def _sharegpt(turns: Any, system: Any) -> Conversation:
    if not isinstance(turns, list) or not turns:
        raise ValueError("'conversations' must be a non-empty list")
    out: list[Message] = []
    if isinstance(system, str) and system.strip():
        out.append({"role": "system", "content": system})
    trained: set[int] = set()
    for i, turn in enumerate(turns):
        role = SHAREGPT_ROLES.get(str(turn.get("from"))) if isinstance(turn, dict) else None
        if role is None:
            raise ValueError(f"conversations[{i}] needs 'from' in {sorted(SHAREGPT_ROLES)}")
        value = turn.get("value")
        if not isinstance(value, str):
            raise ValueError(f"conversations[{i}].value must be a string")
        if role == "assistant" and value.strip():
            trained.add(len(out))
        out.append({"role": role, "content": value})
    return Conversation(out, frozenset(trained))


def _alpaca(row: dict[str, Any]) -> Conversation:
    instruction, output = row.get("instruction"), row.get("output")
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError("'instruction' must be a non-empty string")
    if not isinstance(output, str) or not output.strip():
        raise ValueError("'output' must be a non-empty string")
    out: list[Message] = []
    system = row.get("system")
    if isinstance(system, str) and system.strip():
        out.append({"role": "system", "content": system})
    trained: set[int] = set()
    history = row.get("history") or []
    if not isinstance(history, list):
        raise ValueError("'history' must be a list of [instruction, response] pairs")
    for i, pair in enumerate(history):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(t, str) for t in pair)):
            raise ValueError(f"history[{i}] must be a pair of strings")
        out.append({"role": "user", "content": pair[0]})
        trained.add(len(out))  # earlier answers are answers too (LLaMA-Factory trains them as well)
        out.append({"role": "assistant", "content": pair[1]})
    extra = row.get("input")
    prompt = f"{instruction}\n\n{extra}" if isinstance(extra, str) and extra.strip() else instruction
    out.append({"role": "user", "content": prompt})
    trained.add(len(out))
    out.append({"role": "assistant", "content": output})
    return Conversation(out, frozenset(trained))


# ---- tokenizing -----------------------------------------------------------------------------------


def _render(tokenizer: ChatTokenizer, messages: list[Message], generation_prompt: bool) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    if not isinstance(text, str):
        raise FineTuneError("the model's chat template did not render text")
    return text


def tokenize(tokenizer: ChatTokenizer, conversation: Conversation, max_length: int) -> TokenizedExample:
    """Renders the conversation piece by piece with the chat template: the text up to each trained
    assistant turn's generation prompt is masked, the reply (with its end-of-turn token) is learned.
    Each piece is tokenized on its own, so the prompt tokens are exactly what generation sees after
    `apply_chat_template(..., add_generation_prompt=True)`; this works for any template whose
    renderings of a conversation's prefixes are prefixes of each other. Templates that rewrite
    earlier turns (e.g. dropping past reasoning) fail that check and train the last reply only."""
    messages = conversation.messages
    pieces: list[tuple[str, bool]] = []  # (text, learned)
    done = ""
    for index in sorted(conversation.trained):
        prompt = _render(tokenizer, messages[:index], generation_prompt=True)
        full = _render(tokenizer, messages[: index + 1], generation_prompt=False)
        if not (prompt.startswith(done) and full.startswith(prompt)):
            return _last_turn_only(tokenizer, conversation, max_length)
        pieces += [(prompt[len(done) :], False), (full[len(prompt) :], True)]
        done = full
    input_ids: list[int] = []
    labels: list[int] = []
    for text, learned in pieces:
        ids = tokenizer.encode(text, add_special_tokens=False) if text else []
        input_ids += ids
        labels += ids if learned else [IGNORE_INDEX] * len(ids)
    # Turns after the last trained one add nothing to learn from; they are left out.
    return TokenizedExample(input_ids[:max_length], labels[:max_length])


def _last_turn_only(
    tokenizer: ChatTokenizer, conversation: Conversation, max_length: int
) -> TokenizedExample:
    last = max(conversation.trained)
    prompt = _render(tokenizer, conversation.messages[:last], generation_prompt=True)
    full = _render(tokenizer, conversation.messages[: last + 1], generation_prompt=False)
    if not full.startswith(prompt):
        raise FineTuneError("the model's chat template renders a reply that does not extend its prompt")
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    reply_ids = tokenizer.encode(full[len(prompt) :], add_special_tokens=False)
    ids = prompt_ids + reply_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + reply_ids
    return TokenizedExample(ids[:max_length], labels[:max_length])


def tokenize_all(
    tokenizer: ChatTokenizer, conversations: list[Conversation], max_length: int
) -> tuple[list[TokenizedExample], int]:
    """The examples with something left to learn after truncation, and how many were dropped."""
    examples = [tokenize(tokenizer, c, max_length) for c in conversations]
    kept = [e for e in examples if e.trained_tokens > 0]
    return kept, len(examples) - len(kept)
