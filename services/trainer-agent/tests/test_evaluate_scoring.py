"""The evaluation runner's scoring and inputs without a model: BLEU, exact match and multiple-choice
accuracy on hand-made strings, held-out rows read into examples, and the config from file and env."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("sacrebleu", reason="the finetune extra is not installed")

from suanli_trainer_agent.evaluate.config import EvaluationError, load_config
from suanli_trainer_agent.evaluate.examples import load_examples
from suanli_trainer_agent.evaluate.metrics import (
    MultipleChoice,
    accuracy,
    answer_index,
    bleu,
    chosen_index,
    exact_match,
    normalise,
)


def test_exact_match_normalises_case_and_whitespace() -> None:
    assert normalise("  Hello \n  World ") == "hello world"
    assert exact_match(["Paris", " the  cat\n", "dog"], ["paris", "The cat", "cat"]) == pytest.approx(2 / 3)
    assert exact_match([], []) == 0.0


def test_bleu() -> None:
    sentence = "the quick brown fox jumps over the lazy dog"
    assert bleu([sentence], [sentence]) == pytest.approx(100.0)
    assert bleu(["completely different words here now"], [sentence]) == pytest.approx(0.0)
    partial = bleu(["the quick brown fox jumps over a sleepy cat"], [sentence])
    assert 0.0 < partial < 100.0
    assert bleu([], []) == 0.0


def test_answers_and_choices() -> None:
    choices = ["Paris", "London", "A cat"]
    assert [answer_index(a, choices) for a in (1, "B", "b", " london ", "a cat")] == [1, 1, 1, 1, 2]
    for bad in (3, "D", "Berlin", True, None):
        with pytest.raises(ValueError):
            answer_index(bad, choices)
    assert chosen_index("B", choices) == 1
    assert chosen_index("(b)", choices) == 1
    assert chosen_index("B) London", choices) == 1
    assert chosen_index("Answer: C", choices) == 2
    assert chosen_index(" paris. ", choices) == 0
    assert chosen_index("a cat", choices) == 2  # the text wins over a leading letter
    assert chosen_index("Berlin", choices) is None
    assert chosen_index("D", choices) is None


def test_accuracy_counts_multiple_choice_rows_only() -> None:
    question = MultipleChoice(("Paris", "London"), 0)
    assert accuracy(["A", "London", "free text"], [question, question, None]) == 0.5
    assert accuracy(["free text"], [None]) is None


def test_held_out_rows(tmp_path: Path) -> None:
    rows = [
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Capital of France?"},
                {"role": "assistant", "content": "Paris"},
            ]
        },
        {"instruction": "Translate", "input": "chat", "output": "cat"},
        {"messages": [{"role": "user", "content": "2+2? A) 3 B) 4"}], "choices": ["3", "4"], "answer": "B"},
        {"instruction": "Pick the animal", "choices": ["rock", "dog"], "answer": 1},
    ]
    path = tmp_path / "heldout.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    examples = load_examples(path, limit=200)
    assert [e.reference for e in examples] == ["Paris", "cat", "4", "dog"]
    assert examples[0].prompt == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert examples[1].prompt_text == "Translate\n\nchat"
    assert [e.question for e in examples] == [
        None,
        None,
        MultipleChoice(("3", "4"), 1),
        MultipleChoice(("rock", "dog"), 1),
    ]
    assert len(load_examples(path, limit=2)) == 2

    path.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}], "choices": ["a", "b"]}))
    with pytest.raises(EvaluationError, match=r"heldout\.jsonl example 1: .*'answer'"):
        load_examples(path, limit=10)


def test_config_from_env_and_file(tmp_path: Path) -> None:
    env = {
        "SUANLI_MODEL_PATH": "/vol/inputs/model/ft",
        "SUANLI_DATASET_PATH": "/vol/inputs/dataset/test.jsonl",
        "SUANLI_OUTPUT_PATH": "/vol/output",
        "SUANLI_EVAL_CONFIG": json.dumps(
            {
                "models": [{"name": "fine-tune"}, {"name": "base", "path": "/models/base"}],
                "max_new_tokens": 32,
            }
        ),
    }
    config = load_config(None, env)
    assert config.model_paths() == [
        ("fine-tune", Path("/vol/inputs/model/ft")),
        ("base", Path("/models/base")),
    ]
    assert config.file == Path("/vol/inputs/dataset/test.jsonl") and config.output_dir == Path("/vol/output")
    assert (config.max_new_tokens, config.max_examples) == (32, 200)

    assert load_config(None, {k: v for k, v in env.items() if k != "SUANLI_EVAL_CONFIG"}).model_paths() == [
        ("model", Path("/vol/inputs/model/ft"))
    ]
    file = tmp_path / "eval.json"
    file.write_text(
        json.dumps({"models": [{"name": "a", "path": "m"}, {"name": "b"}], "file": "x", "output_dir": "o"})
    )
    with pytest.raises(
        EvaluationError, match=r"^invalid evaluation config: models\[1\] \(b\) has no path \(only the first"
    ):
        load_config(file, {})
    file.write_text(
        json.dumps({"models": [{"name": "a", "path": "m"}], "file": "x", "output_dir": "o", "k": 1})
    )
    with pytest.raises(EvaluationError, match="invalid evaluation config: k"):
        load_config(file, {})
