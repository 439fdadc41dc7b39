"""The evaluation runner as the agent starts it (`python -m suanli_trainer_agent.evaluate`) on the
tiny Qwen2 model: the result file and line, scores that would change if scoring broke, refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sacrebleu", reason="the finetune extra is not installed")

from suanli_trainer_agent.finetune.reporting import RESULT_PREFIX

QUESTIONS = ["Who are you?", "What is your name?", "Tell me about the fox.", "Hello!", "How are you today?"]


@pytest.fixture(scope="module")
def talkative_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with larger random weights: the seed's own answers every prompt with newlines
    only, which strip to nothing, and a reference cannot be empty."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path_factory.mktemp("talkative") / "model"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0, 0.2)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return folder


def evaluate(
    tmp_path: Path, env: dict[str, str], args: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "suanli_trainer_agent.evaluate", *(args or [])],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
    )


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def chat(question: str, reply: str, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]
    return {"messages": messages, **extra}


def test_scores_are_exact_when_the_references_are_what_the_model_says(
    talkative_model: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    # First run: the model's own answers to the questions (the env alone names model, file and output).
    first = write_rows(tmp_path / "first.jsonl", [chat(q, "unknown") for q in QUESTIONS])
    env = {
        "SUANLI_MODEL_PATH": str(talkative_model),
        "SUANLI_DATASET_PATH": str(first),
        "SUANLI_OUTPUT_PATH": str(tmp_path / "out1"),
        "SUANLI_EVAL_CONFIG": json.dumps(
            {"models": [{"name": "tiny"}], "max_new_tokens": 12, "batch_size": 2}
        ),
    }
    done = evaluate(tmp_path, env)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "out1" / "result.json").read_text())
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    assert [json.loads(line[len(RESULT_PREFIX) :]) for line in lines] == [result]
    [tiny] = result["models"]
    assert set(tiny) == {"name", "bleu", "exact_match", "accuracy", "examples", "seconds", "samples"}
    assert tiny["name"] == "tiny" and tiny["examples"] == 5 and tiny["accuracy"] is None
    assert tiny["exact_match"] == 0.0 and tiny["seconds"] > 0
    assert [s["prompt"] for s in tiny["samples"]] == QUESTIONS
    assert all(s["reference"] == "unknown" for s in tiny["samples"])
    outputs = [s["output"] for s in tiny["samples"]]
    assert all(o.strip() for o in outputs), outputs
    assert any(line.startswith("tiny: BLEU ") for line in done.stdout.splitlines())

    # Second run, the same prompts (so the same batches): the references are those answers, and two
    # rows are multiple choice, one answered right and one wrong. The seed model runs beside it.
    rows = [chat(q, o) for q, o in zip(QUESTIONS, outputs, strict=True)]
    rows[0]["choices"], rows[0]["answer"] = [outputs[0], "zzz"], 0
    rows[1]["choices"], rows[1]["answer"] = ["zzz", outputs[1]], "A"
    config = tmp_path / "eval.json"
    config.write_text(
        json.dumps(
            {
                "models": [
                    {"name": "fine-tune", "path": str(talkative_model)},
                    {"name": "base", "path": str(tiny_model_dir)},
                ],
                "file": str(write_rows(tmp_path / "second.jsonl", rows)),
                "output_dir": str(tmp_path / "out2"),
                "max_new_tokens": 12,
                "batch_size": 2,
            }
        )
    )
    done = evaluate(tmp_path, {}, ["--config", str(config)])
    assert done.returncode == 0, done.stderr[-2000:]
    finetune, base = json.loads((tmp_path / "out2" / "result.json").read_text())["models"]
    assert [s["output"] for s in finetune["samples"]] == outputs
    assert finetune["exact_match"] == 1.0
    assert finetune["bleu"] == pytest.approx(100.0)
    assert finetune["accuracy"] == 0.5
    assert base["name"] == "base" and base["exact_match"] == 0.0 and base["accuracy"] == 0.0


@pytest.mark.parametrize(
    ("rows", "reason"),
    [
        (None, "does not exist"),
        ([{"messages": [{"role": "user", "content": "hi"}]}], "example 1: no assistant turn"),
        ([chat("q", "a", choices=["x", "y"], answer="C")], "example 1: 'answer' 'C'"),
    ],
)
def test_refusals_exit_2_with_the_reason_last(
    rows: list[dict[str, Any]] | None, reason: str, tmp_path: Path
) -> None:
    file = tmp_path / "heldout.jsonl"
    if rows is not None:
        write_rows(file, rows)
    env = {
        "SUANLI_MODEL_PATH": str(tmp_path),
        "SUANLI_DATASET_PATH": str(file),
        "SUANLI_OUTPUT_PATH": str(tmp_path / "out"),
    }
    done = evaluate(tmp_path, env)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("evaluation refused:") and reason in last, last


def test_a_config_without_a_model_is_refused(tmp_path: Path) -> None:
    done = evaluate(tmp_path, {"SUANLI_DATASET_PATH": "x", "SUANLI_OUTPUT_PATH": "o"})
    assert done.returncode == 2
    assert "invalid evaluation config: models: Field required" in done.stderr.strip().splitlines()[-1]
