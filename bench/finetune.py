"""Fine-tune throughput: the platform's runner against a plain transformers `Trainer` + `peft` script.

Both sides train the same model (SmolLM2-135M-Instruct, as the catalog builds it) on the same data
(examples/identity.jsonl) for the same optimizer steps with the same LoRA (rank, alpha 2 x rank,
all-linear, dropout 0), batch size, learning rate and warm-up, in fp32 on the CPU (bf16 autocast on
a GPU), each in a fresh process so both start cold:
  (a) platform: `python -m suanli_trainer_agent.finetune`, started as a trainer agent starts it (the
      agent's env, the gateway's SUANLI_FINETUNE_CONFIG), in a temporary folder; or, with
      --platform-url (and SUANLI_API_KEY), a job through the running platform's OpenAI fine-tuning
      API (POST /v1/files, POST /v1/fine_tuning/jobs, polled until it ends);
  (b) baseline: `Trainer` on a `peft` LoRA model, fed the runner's own tokenization (same chat
      template, same max length, loss on assistant tokens only) in the runner's batch order,
      padded per batch (DataCollatorForSeq2Seq), with no evaluation and no checkpoints, its loss
      logged every step as the runner's is.
The sides alternate (a, b, a, b, ...) so both see the same machine. Tokens/s counts the same
non-padding tokens over the training loop only (the runner's train_seconds, its last checkpoint
included; the Trainer's time from on_train_begin to on_train_end), the median over --repeats runs;
the per-step column is the mean of the tokens/s each side's steps report. Both learn the same:
without warm-up their losses agree to the 6th digit; with it, Trainer's first step runs at a
learning rate of 0 where the runner's starts at lr/warm-up steps, so the final losses differ a
little. Target: the platform at 0.95 or better.

    .venv/bin/python bench/finetune.py [--steps 30] [--repeats 2] [--platform-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from suanli_trainer_agent.finetune.config import BASE_LEARNING_RATE
from suanli_trainer_agent.finetune.data import load_conversations
from suanli_trainer_agent.finetune.reporting import parse_metrics

REPO = Path(__file__).resolve().parents[1]
TARGET_RATIO = 0.95
# The seed models the tests build and share (services/trainer-agent/tests/conftest.py).
TEST_CACHE = Path("/tmp/suanli-test-cache")
BASELINE_PREFIX = "BENCH_BASELINE "
WARMUP_RATIO = 0.05  # FineTuneConfig.warmup_ratio's default, which the platform side keeps


@dataclass(frozen=True, slots=True)
class Spec:
    """What both sides train: the same model, data, steps and hyperparameters."""

    model: str
    data: str
    steps: int
    epochs: int
    batch_size: int
    lora_rank: int
    learning_rate: float
    seed: int = 42
    max_seq_length: int = 2048

    @property
    def warmup_steps(self) -> int:
        return round(self.steps * WARMUP_RATIO)  # as suanli_trainer_agent.finetune.config.resolve


@dataclass(slots=True)
class Measurement:
    side: str
    tokens: int
    seconds: float
    step_tokens_per_second: float  # mean of the per-step figures the side reports
    final_loss: float | None
    threads: int | None
    steps: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds


# ---- the model --------------------------------------------------------------------------------------


def seed_model_dir() -> Path:
    """SmolLM2-135M-Instruct as the catalog builds it: the catalog's models folder, a test cache,
    or built now (about a minute) into the folder the tests share."""
    from suanli_catalog import seed
    from suanli_catalog.settings import CatalogSettings

    name = seed.SMOLLM2.folder_name
    candidates = [
        CatalogSettings().resolved_models_dir / name,
        TEST_CACHE / "seed-models" / name,
        *sorted(TEST_CACHE.glob(f"catalog/smollm2-*/{name}")),
    ]
    for folder in candidates:
        if seed.is_built(folder):
            return folder
    target = TEST_CACHE / "seed-models" / name
    print(f"building {seed.SMOLLM2.id} into {target} (once) ...", flush=True)
    return asyncio.run(seed.build_once(seed.SMOLLM2, target))


# ---- (a) the platform's runner ----------------------------------------------------------------------


def runner_config(spec: Spec) -> dict[str, Any]:
    """What the gateway puts into SUANLI_FINETUNE_CONFIG for this request (jobs._runner_config)."""
    return {
        "method": "lora",
        "n_epochs": spec.epochs,
        "batch_size": spec.batch_size,
        "learning_rate_multiplier": spec.learning_rate / BASE_LEARNING_RATE["lora"],
        "lora_rank": spec.lora_rank,
        "lora_alpha": 2 * spec.lora_rank,
        "lora_dropout": 0.0,
        "target_modules": "all-linear",
        "max_seq_length": spec.max_seq_length,
        "seed": spec.seed,
        "suffix": "",
    }


def run_platform_runner(spec: Spec, workdir: Path) -> Measurement:
    volume = Path(tempfile.mkdtemp(prefix="platform-", dir=workdir))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUANLI_")}
    env.update(
        {
            "NNODES": "1",
            "NODE_RANK": "0",
            "WORLD_SIZE": "1",
            "RANK": "0",
            "LOCAL_RANK": "0",
            "SUANLI_CKPT_PATH": str(volume / "checkpoints"),
            "SUANLI_OUTPUT_PATH": str(volume / "output"),
            "SUANLI_MODEL_PATH": spec.model,
            "SUANLI_DATASET_PATH": spec.data,
            "SUANLI_FINETUNE_CONFIG": json.dumps(runner_config(spec)),
            "PYTHONUNBUFFERED": "1",
        }
    )
    process = subprocess.run(
        [sys.executable, "-m", "suanli_trainer_agent.finetune"],
        cwd=volume,
        env=env,
        capture_output=True,
        text=True,
    )
    if process.returncode != 0:
        raise RuntimeError(f"the runner exited {process.returncode}: {process.stderr.strip()[-2000:]}")
    lines = process.stdout.splitlines()
    steps = [m for m in map(parse_metrics, lines) if m is not None]
    result = json.loads((volume / "output" / "result.json").read_text())
    found = re.search(r" with (\d+) threads", process.stdout)
    layout = re.search(r"; (packing \w+, logits [\w ]+)", process.stdout)
    return Measurement(
        side="platform",
        tokens=int(result["trained_tokens"]),
        seconds=float(result["train_seconds"]),
        step_tokens_per_second=statistics.fmean(m["tokens_per_second"] for m in steps),
        final_loss=result["final_loss"],
        threads=int(found.group(1)) if found else None,
        steps=int(result["total_steps"]),
        extra={"layout": layout.group(1)} if layout else {},
    )


# ---- (a') the platform, through its OpenAI fine-tuning API ------------------------------------------


def run_platform_api(spec: Spec, base_url: str, api_key: str, model: str) -> Measurement:
    """One job through POST /v1/files and /v1/fine_tuning/jobs, polled until it ends; its loop's
    seconds come from the job's step events (whole seconds), created-to-finished beside them."""
    from openai import OpenAI

    client = OpenAI(base_url=base_url.rstrip("/") + "/v1", api_key=api_key)
    with open(spec.data, "rb") as data:
        uploaded = client.files.create(file=data, purpose="fine-tune")
    multiplier = spec.learning_rate / BASE_LEARNING_RATE["lora"]
    # Suanli's LoRA settings ride in method.supervised, beside OpenAI's hyperparameters.
    method: Any = {
        "type": "supervised",
        "supervised": {
            "hyperparameters": {
                "n_epochs": spec.epochs,
                "batch_size": spec.batch_size,
                "learning_rate_multiplier": multiplier,
            },
            "lora": {"rank": spec.lora_rank, "alpha": 2 * spec.lora_rank, "dropout": 0.0},
            "max_seq_length": spec.max_seq_length,
        },
    }
    job = client.fine_tuning.jobs.create(
        model=model, training_file=uploaded.id, seed=spec.seed, method=method
    )
    while job.status not in ("succeeded", "failed", "cancelled"):
        time.sleep(2)
        job = client.fine_tuning.jobs.retrieve(job.id)
    if job.status != "succeeded" or job.trained_tokens is None:
        raise RuntimeError(f"fine-tuning job {job.id} ended {job.status}: {job.error}")
    # The step events (newest first, whole seconds) time the loop: from the first step's event
    # to the last's is all steps but the first.
    timed: list[tuple[int, dict[str, Any]]] = sorted(
        (
            (e.created_at, e.data)
            for e in client.fine_tuning.jobs.list_events(job.id, limit=100)
            if e.type == "metrics" and isinstance(e.data, dict) and "step" in e.data
        ),
        key=lambda pair: int(pair[1]["step"]),
    )
    steps = [data for _, data in timed]
    whole_job = float(job.finished_at or 0) - job.created_at
    if len(timed) > 1 and timed[-1][0] > timed[0][0]:
        seconds = (timed[-1][0] - timed[0][0]) * len(timed) / (len(timed) - 1)
    else:
        seconds = whole_job
    loss = steps[-1].get("train_loss", steps[-1].get("loss")) if steps else None
    return Measurement(
        side="platform",
        tokens=job.trained_tokens,
        seconds=seconds,
        step_tokens_per_second=statistics.fmean(m["tokens_per_second"] for m in steps) if steps else math.nan,
        final_loss=loss,
        threads=None,
        steps=int(steps[-1]["step"]) if steps else spec.steps,
        extra={"job": job.id, "whole_job_seconds": whole_job},
    )


# ---- (b) transformers Trainer + peft ----------------------------------------------------------------


def run_baseline(spec: Spec, workdir: Path) -> Measurement:
    process = subprocess.run(
        [sys.executable, __file__, "--baseline-worker", json.dumps(asdict(spec))],
        cwd=workdir,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
    )
    if process.returncode != 0:
        raise RuntimeError(f"the baseline exited {process.returncode}: {process.stderr.strip()[-2000:]}")
    line = next(x for x in process.stdout.splitlines() if x.startswith(BASELINE_PREFIX))
    body = json.loads(line[len(BASELINE_PREFIX) :])
    return Measurement(side="baseline", **body)


def baseline_worker(spec: Spec) -> None:
    """The baseline process: a plain Trainer on a peft model, on the runner's tokens and batches."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from suanli_trainer_agent.finetune.data import tokenize_all
    from suanli_trainer_agent.finetune.train import epoch_order

    tokenizer = AutoTokenizer.from_pretrained(spec.model)
    tokenizer.padding_side = "right"  # as the runner pads: positions 0.. for every row
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    examples, _ = tokenize_all(tokenizer, load_conversations(Path(spec.data)), spec.max_seq_length)
    batch = min(spec.batch_size, len(examples))
    # The runner's order (a function of seed and epoch), laid out flat and read sequentially.
    rows = [
        {"input_ids": examples[i].input_ids, "labels": examples[i].labels}
        for epoch in range(spec.epochs)
        for i in epoch_order(len(examples), epoch, spec.seed)
    ]

    torch.manual_seed(spec.seed)
    model: Any = AutoModelForCausalLM.from_pretrained(spec.model, dtype=torch.float32)
    model.config.use_cache = False
    lora = LoraConfig(
        r=spec.lora_rank,
        lora_alpha=2 * spec.lora_rank,
        lora_dropout=0.0,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)

    class LoopClock(TrainerCallback):
        """The training loop's time, and each step's (forward, backward, clipping, optimizer)."""

        def __init__(self) -> None:
            self.started = self.finished = self.step_started = 0.0
            self.step_seconds: list[float] = []

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.monotonic()

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.step_started = time.monotonic()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.step_seconds.append(time.monotonic() - self.step_started)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.finished = time.monotonic()

    clock = LoopClock()
    output_dir = tempfile.mkdtemp(prefix="trainer-", dir=".")  # the bench's folder, removed after
    args = TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=batch,
        max_steps=spec.steps,
        learning_rate=spec.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=spec.warmup_steps,
        weight_decay=0.0,
        max_grad_norm=1.0,
        train_sampling_strategy="sequential",
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        remove_unused_columns=False,
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        seed=spec.seed,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=rows,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100),
        callbacks=[clock],
    )
    output = trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    seconds = clock.finished - clock.started
    used = rows[: spec.steps * batch]
    tokens = sum(len(r["input_ids"]) for r in used)
    step_tokens = [sum(len(r["input_ids"]) for r in used[i : i + batch]) for i in range(0, len(used), batch)]
    step_rates = [n / s for n, s in zip(step_tokens, clock.step_seconds, strict=True)]
    body = {
        "tokens": tokens,
        "seconds": seconds,
        "step_tokens_per_second": statistics.fmean(step_rates),
        "final_loss": losses[-1] if losses else None,
        "threads": torch.get_num_threads(),
        "steps": trainer.state.global_step,
        "extra": {"train_runtime": output.metrics["train_runtime"], "optim": str(args.optim)},
    }
    print(BASELINE_PREFIX + json.dumps(body), flush=True)


# ---- the report -------------------------------------------------------------------------------------


def whole_epochs(n_examples: int, batch_size: int, steps: int) -> tuple[int, int]:
    """(epochs, steps): the runner trains whole epochs, so the steps round up to one."""
    per_epoch = math.ceil(n_examples / min(batch_size, n_examples))
    epochs = max(1, math.ceil(steps / per_epoch))
    return epochs, epochs * per_epoch


def report(spec: Spec, runs: dict[str, list[Measurement]]) -> None:
    print(
        f"model {spec.model}; data {spec.data}; {spec.steps} steps ({spec.epochs} epochs) of batch "
        f"{spec.batch_size}, LoRA r={spec.lora_rank} alpha={2 * spec.lora_rank} all-linear, "
        f"lr {spec.learning_rate:g}"
    )
    header = f"{'side':<10}{'runs':>5}{'tokens':>8}{'seconds':>9}{'tokens/s':>10}{'step tok/s':>12}"
    print(header + f"{'final loss':>12}{'threads':>9}")
    median: dict[str, float] = {}
    for side, measured in runs.items():
        rates = [m.tokens_per_second for m in measured]
        median[side] = statistics.median(rates)
        losses = [m.final_loss for m in measured if m.final_loss is not None]
        threads = sorted({m.threads for m in measured if m.threads is not None})
        print(
            f"{side:<10}{len(measured):>5}{measured[0].tokens:>8}"
            f"{statistics.median(m.seconds for m in measured):>9.1f}{median[side]:>10.1f}"
            f"{statistics.median(m.step_tokens_per_second for m in measured):>12.1f}"
            f"{statistics.median(losses) if losses else math.nan:>12.4f}"
            f"{','.join(map(str, threads)) or '?':>9}"
        )
        print("          each run, tokens/s: " + ", ".join(f"{r:.1f}" for r in rates))
    ratio = median["platform"] / median["baseline"]
    verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
    print(f"platform / baseline tokens/s: {ratio:.3f} ({verdict}: target {TARGET_RATIO} or better)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="Hugging Face model folder (default: the catalog's SmolLM2 seed)")
    parser.add_argument("--data", default=str(REPO / "examples" / "identity.jsonl"))
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps (rounded up to whole epochs)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each side, alternating")
    parser.add_argument(
        "--platform-url", help="a running platform (with SUANLI_API_KEY): side (a) goes through its API"
    )
    parser.add_argument("--platform-model", default="smollm2-135m-instruct", help="the base model's id there")
    parser.add_argument("--baseline-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_worker:
        baseline_worker(Spec(**json.loads(args.baseline_worker)))
        return

    api_key = os.environ.get("SUANLI_API_KEY", "")
    if args.platform_url and not api_key:
        parser.error("--platform-url needs an API key in SUANLI_API_KEY")
    n_examples = len(load_conversations(Path(args.data)))
    epochs, steps = whole_epochs(n_examples, args.batch_size, args.steps)
    if steps != args.steps:
        print(f"note: {args.steps} steps rounded up to {steps} ({epochs} whole epochs)")
    if n_examples % min(args.batch_size, n_examples):
        # The baseline reads the runner's order flat: its batches straddle epochs where the runner's don't.
        print(f"note: {n_examples} examples do not fill batches of {args.batch_size}: the batches differ")
    spec = Spec(
        model=args.model or str(seed_model_dir()),
        data=str(Path(args.data).resolve()),
        steps=steps,
        epochs=epochs,
        batch_size=args.batch_size,
        lora_rank=args.lora_rank,
        learning_rate=args.lr,
    )
    runs: dict[str, list[Measurement]] = {"platform": [], "baseline": []}
    with tempfile.TemporaryDirectory(prefix="suanli-bench-finetune-") as tmp:
        for repeat in range(args.repeats):
            for side in ("platform", "baseline"):
                if args.platform_url and side == "platform":
                    measured = run_platform_api(spec, args.platform_url, api_key, args.platform_model)
                elif side == "platform":
                    measured = run_platform_runner(spec, Path(tmp))
                else:
                    measured = run_baseline(spec, Path(tmp))
                if measured.steps != spec.steps:
                    raise RuntimeError(f"{side} trained {measured.steps} steps, not {spec.steps}")
                runs[side].append(measured)
                print(
                    f"run {repeat + 1} {side}: {measured.tokens} tokens in {measured.seconds:.1f}s = "
                    f"{measured.tokens_per_second:.1f} tokens/s, final loss {measured.final_loss}, "
                    f"{measured.threads} threads {measured.extra or ''}",
                    flush=True,
                )
    report(spec, runs)


if __name__ == "__main__":
    main()
