"""The fine-tune runner's data side: the three row formats, chat-template tokenization with the loss on
assistant tokens only, and the config with its "auto" choices."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from suanli_trainer_agent.finetune.config import FineTuneConfig, load_config, resolve
from suanli_trainer_agent.finetune.data import (
    IGNORE_INDEX,
    load_conversations,
    to_conversation,
    tokenize,
    tokenize_all,
)
from suanli_trainer_agent.finetune.errors import FineTuneError

ROWS: dict[str, dict[str, Any]] = {
    "openai": {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello, how are you?"},
            {"role": "assistant", "content": "I am fine, thank you."},
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": [{"type": "text", "text": "The capital of France is Paris."}]},
        ]
    },
    "alpaca": {
        "system": "Be brief.",
        "history": [["Hello, how are you?", "I am fine, thank you."]],
        "instruction": "What is the capital",
        "input": "of France?",
        "output": "The capital of France is Paris.",
    },
    "sharegpt": {
        "system": "Be brief.",
        "conversations": [
            {"from": "human", "value": "Hello, how are you?"},
            {"from": "gpt", "value": "I am fine, thank you."},
            {"from": "human", "value": "What is the capital of France?"},
            {"from": "gpt", "value": "The capital of France is Paris."},
        ],
    },
}


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def spans(ids: list[int], labels: list[int], tokenizer: Any) -> tuple[str, str]:
    learned = tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX])
    masked = tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label == IGNORE_INDEX])
    return learned, masked


@pytest.mark.parametrize("fmt", sorted(ROWS))
def test_only_assistant_turns_are_learned(fmt: str, tokenizer: Any) -> None:
    conversation = to_conversation(ROWS[fmt])
    assert [m["role"] for m in conversation.messages] == ["system", "user", "assistant", "user", "assistant"]
    example = tokenize(tokenizer, conversation, max_length=4096)
    # The pieces add up to the template's own rendering of the whole conversation...
    whole = tokenizer.apply_chat_template(conversation.messages, tokenize=False)
    assert tokenizer.decode(example.input_ids) == whole
    # ... and the loss covers exactly the two replies, each with its end-of-turn token.
    learned, masked = spans(example.input_ids, example.labels, tokenizer)
    assert learned == "I am fine, thank you.<|im_end|>\nThe capital of France is Paris.<|im_end|>\n"
    assert "Hello, how are you?" in masked and "France?" in masked and "Be brief." in masked
    assert "Paris" not in masked
    # What generation sees as a prompt is masked token for token.
    prompt = tokenizer.apply_chat_template(
        conversation.messages[:4], tokenize=False, add_generation_prompt=True
    )
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    assert example.input_ids[: len(prompt_ids)] == prompt_ids
    assert (
        example.labels[len(prompt_ids) - 1] == IGNORE_INDEX
        and example.labels[len(prompt_ids)] != IGNORE_INDEX
    )


def test_weight_zero_turns_are_not_learned(tokenizer: Any) -> None:
    row = json.loads(json.dumps(ROWS["openai"]))
    row["messages"][2]["weight"] = 0
    example = tokenize(tokenizer, to_conversation(row), max_length=4096)
    learned, _ = spans(example.input_ids, example.labels, tokenizer)
    assert learned == "The capital of France is Paris.<|im_end|>\n"


def test_truncation_drops_examples_with_nothing_left_to_learn(tokenizer: Any) -> None:
    conversation = to_conversation(ROWS["openai"])
    kept, dropped = tokenize_all(tokenizer, [conversation], max_length=8)
    assert (kept, dropped) == ([], 1)
    example = tokenize(tokenizer, conversation, max_length=64)
    assert len(example.input_ids) == len(example.labels) == 64


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "no assistant turn"),
        ({"instruction": "hi"}, "'output'"),
        ({"conversations": [{"from": "alien", "value": "hi"}]}, "'from'"),
        ({"prompt": "hi", "completion": "there"}, "unknown format"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_rows_are_refused_with_their_number(row: Any, reason: str, tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(ROWS["sharegpt"]) + "\n\n" + json.dumps(row) + "\n")
    with pytest.raises(FineTuneError, match=rf"example 3: .*{reason}"):
        load_conversations(path)


def test_json_arrays_and_staged_folders_are_read(tmp_path: Path) -> None:
    folder = tmp_path / "dataset"
    folder.mkdir()
    (folder / "data.json").write_text(json.dumps([ROWS["alpaca"], ROWS["alpaca"]]))
    assert len(load_conversations(folder)) == 2
    with pytest.raises(FineTuneError, match="invalid JSON"):
        (folder / "data.json").write_text("[{")
        load_conversations(folder)


def test_auto_hyperparameters_give_a_small_set_enough_steps(tmp_path: Path) -> None:
    config = FineTuneConfig(model_path=tmp_path, train_file=tmp_path, output_dir=tmp_path)
    hp = resolve(config, 20)
    assert (hp.batch_size, hp.learning_rate, hp.steps_per_epoch) == (4, 1e-3, 5)
    assert 20 <= hp.total_steps <= 60 and hp.n_epochs > 3
    big = resolve(config, 100_000)
    assert big.n_epochs == 3
    full = resolve(config.model_copy(update={"method": "full", "learning_rate_multiplier": 2.0}), 20)
    assert full.learning_rate == pytest.approx(2e-5)
    fixed = resolve(config.model_copy(update={"n_epochs": 1, "batch_size": 64}), 20)
    assert (fixed.batch_size, fixed.total_steps) == (20, 1)


def test_config_paths_come_from_the_agent_env(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"method": "full", "n_epochs": 2}))
    env = {
        "SUANLI_MODEL_PATH": "/volume/inputs/model/m",
        "SUANLI_DATASET_PATH": "/volume/inputs/dataset/train.jsonl",
        "SUANLI_OUTPUT_PATH": "/volume/output",
        "SUANLI_CKPT_PATH": "/volume/checkpoints",
    }
    config = load_config(path, env)
    assert config.method == "full" and config.n_epochs == 2
    assert config.resolved_checkpoint_dir == Path("/volume/checkpoints")
    assert config.train_file == Path("/volume/inputs/dataset/train.jsonl")
    inline = load_config(None, {**env, "SUANLI_FINETUNE_CONFIG": '{"lora_rank": 8}'})
    assert inline.lora_rank == 8 and inline.output_dir == Path("/volume/output")
    with pytest.raises(FineTuneError, match="model_path"):
        load_config(None, {})
    with pytest.raises(FineTuneError, match="method"):
        load_config(None, {**env, "SUANLI_FINETUNE_CONFIG": '{"method": "dpo"}'})
