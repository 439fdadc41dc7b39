"""The fine-tune runner on the tiny Qwen2 model: metrics lines, TensorBoard files, checkpoints and
their retention, the adapter and merged outputs, resume after a kill, SIGTERM, and refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from suanli_trainer_agent.finetune.config import FineTuneConfig
from suanli_trainer_agent.finetune.reporting import CHECKPOINT_PREFIX, parse_metrics

pytest.importorskip("peft", reason="the finetune extra is not installed")

METRIC_KEYS = {"step", "total_steps", "loss", "learning_rate", "epoch", "tokens_per_second", "eta_seconds"}


def metrics(text: str) -> list[dict[str, Any]]:
    return [m for m in map(parse_metrics, text.splitlines()) if m is not None]


def checkpoint_steps(folder: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in folder.glob("checkpoint-*"))


def test_lora_run_writes_metrics_checkpoints_and_loadable_models(
    tiny_model_dir: Path, identity_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from suanli_trainer_agent.finetune.train import run

    config = FineTuneConfig(
        model_path=tiny_model_dir,
        train_file=identity_file,
        validation_file=identity_file,
        output_dir=tmp_path / "out",
        n_epochs=2,
        batch_size=8,  # 20 examples: 3 steps an epoch, 6 in all
        save_every_steps=2,
        keep_checkpoints=2,
    )
    result = run(config)
    out = capsys.readouterr().out

    lines = metrics(out)
    assert [m["step"] for m in lines] == [1, 2, 3, 4, 5, 6]
    assert all(set(m) >= METRIC_KEYS and m["total_steps"] == 6 for m in lines)
    assert lines[-1]["epoch"] == 2.0 and lines[-1]["eta_seconds"] == 0
    assert "valid_loss" in lines[2] and "valid_loss" in lines[5] and "valid_loss" not in lines[0]
    assert lines[-1]["loss"] < lines[0]["loss"]  # it learns something
    assert "step 6/6" in out
    saved = [
        json.loads(line[len(CHECKPOINT_PREFIX) :])["step"]
        for line in out.splitlines()
        if line.startswith(CHECKPOINT_PREFIX)
    ]
    assert saved == [2, 4, 6]
    assert checkpoint_steps(tmp_path / "out" / "checkpoints") == [4, 6]  # keep_checkpoints=2
    assert list((tmp_path / "out" / "tensorboard").glob("events.out.tfevents.*"))

    assert result["total_steps"] == 6 and result["adapter_dir"] and result["merged_dir"]
    assert json.loads((tmp_path / "out" / "result.json").read_text())["total_steps"] == 6

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged = AutoModelForCausalLM.from_pretrained(result["merged_dir"])
    tokenizer = AutoTokenizer.from_pretrained(result["merged_dir"])
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Who are you?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    assert (
        merged.generate(**prompt, max_new_tokens=4, do_sample=False).shape[1] > prompt["input_ids"].shape[1]
    )
    # The adapter on the base gives the merged model's logits.
    adapted = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), result["adapter_dir"]
    )
    import torch

    with torch.no_grad():
        a = adapted(input_ids=prompt["input_ids"]).logits
        b = merged(input_ids=prompt["input_ids"]).logits
    assert torch.allclose(a, b, atol=1e-4)


def test_full_fine_tune_writes_the_merged_model_only(
    tiny_model_dir: Path, identity_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from suanli_trainer_agent.finetune.train import run

    config = FineTuneConfig(
        model_path=tiny_model_dir,
        train_file=identity_file,
        output_dir=tmp_path / "out",
        method="full",
        n_epochs=1,
        batch_size=10,
        learning_rate_multiplier=10.0,
    )
    result = run(config)
    assert result["adapter_dir"] is None and not (tmp_path / "out" / "adapter").exists()
    assert [m["step"] for m in metrics(capsys.readouterr().out)] == [1, 2]
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(result["merged_dir"]).config.use_cache is True


# ---- the real process, as the agent starts it -----------------------------------------------------


def start(config: dict[str, Any], tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config, default=str))
    return subprocess.Popen(
        [sys.executable, "-m", "suanli_trainer_agent.finetune", "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def read_until_step(process: subprocess.Popen[str], step: int, timeout: float = 120) -> list[dict[str, Any]]:
    assert process.stdout is not None
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    for line in process.stdout:
        found = parse_metrics(line.rstrip("\n"))
        if found is not None:
            seen.append(found)
            if found["step"] >= step:
                return seen
        assert time.monotonic() < deadline, "the run did not reach the step in time"
    raise AssertionError(
        f"the run ended before step {step}: {process.stderr.read() if process.stderr else ''}"
    )


def long_run(tiny_model_dir: Path, identity_file: Path, out: Path) -> dict[str, Any]:
    # Enough steps that the run is still going when the test stops it.
    return {
        "model_path": tiny_model_dir,
        "train_file": identity_file,
        "output_dir": out,
        "n_epochs": 10,
        "batch_size": 2,  # 10 steps an epoch, 100 in all
        "save_every_steps": 5,
        "keep_checkpoints": 2,
    }


def test_a_killed_run_resumes_from_its_checkpoint_to_the_same_total(
    tiny_model_dir: Path, identity_file: Path, tmp_path: Path
) -> None:
    config = long_run(tiny_model_dir, identity_file, tmp_path / "out")
    first = start(config, tmp_path)
    try:
        seen = read_until_step(first, 12)
    finally:
        first.kill()
        first.wait()
    assert first.returncode == -signal.SIGKILL
    total = seen[-1]["total_steps"]
    assert total == 100 and seen[-1]["step"] < total
    saved = checkpoint_steps(tmp_path / "out" / "checkpoints")
    assert saved and len(saved) <= 2 and max(saved) >= 10

    second = start(config, tmp_path)
    out, err = second.communicate(timeout=240)
    assert second.returncode == 0, err[-2000:]
    resumed = metrics(out)
    assert f"resuming from {tmp_path / 'out' / 'checkpoints'}" in out
    assert resumed[0]["step"] == max(saved) + 1
    assert resumed[-1]["step"] == total and len(resumed) == total - max(saved)
    assert (tmp_path / "out" / "merged" / "config.json").is_file()


def test_sigterm_saves_a_checkpoint_and_exits_143(
    tiny_model_dir: Path, identity_file: Path, tmp_path: Path
) -> None:
    config = long_run(tiny_model_dir, identity_file, tmp_path / "out")
    config["save_every_steps"] = 1000
    process = start(config, tmp_path)
    seen = read_until_step(process, 3)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143
    stopped_at = max(m["step"] for m in seen + metrics(out))
    assert stopped_at < 100
    assert checkpoint_steps(tmp_path / "out" / "checkpoints") == [stopped_at]
    assert err.strip().splitlines()[-1].startswith("fine-tune stopped:")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"method": "qlora"}, "qlora needs a CUDA GPU"),
        ({"train_file": "missing.jsonl"}, "does not exist"),
        ({"method": "sft"}, "invalid fine-tune config: method"),
    ],
)
def test_refusals_exit_2_with_the_reason_last(
    change: dict[str, Any], reason: str, tiny_model_dir: Path, identity_file: Path, tmp_path: Path
) -> None:
    if change.get("method") == "qlora":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this node has CUDA; qlora is not refused here")
    config = {
        "model_path": tiny_model_dir,
        "train_file": identity_file,
        "output_dir": tmp_path / "out",
        **change,
    }
    process = start(config, tmp_path)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2, err
    assert reason in err.strip().splitlines()[-1]
