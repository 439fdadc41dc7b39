"""The training loop: a plain PyTorch loop over the tokenized examples (LoRA through peft, or every
weight for `full`), resumable from its own checkpoints at any step, ending with the adapter and a
merged model in the output folder. Plain PyTorch rather than transformers' Trainer: the loop is
short, its step-exact resume and log lines are ours, nothing in it waits on Trainer's callbacks,
and its batches skip the work Trainer's padded batches do for nothing (batching.py).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from suanli_trainer_agent.finetune import checkpoints
from suanli_trainer_agent.finetune.batching import Shortcuts, loss_sum, probe
from suanli_trainer_agent.finetune.config import FineTuneConfig, Hyperparameters, resolve
from suanli_trainer_agent.finetune.data import TokenizedExample, load_conversations, tokenize_all
from suanli_trainer_agent.finetune.errors import FineTuneError
from suanli_trainer_agent.finetune.reporting import RunReporter

FUSED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class Interrupted(FineTuneError):
    """SIGTERM (a cancel, or the agent going away): a checkpoint was saved, the run can resume."""


@dataclass(slots=True)
class StopRequest:
    """Set from a signal handler; the loop looks at it between steps."""

    requested: bool = False


def epoch_order(n: int, epoch: int, seed: int) -> list[int]:
    """The example order of an epoch, a function of (seed, epoch) only: a resumed run meets the
    same batches the killed one would have."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return [int(i) for i in torch.randperm(n, generator=generator)]


def learning_rate_at(step: int, hp: Hyperparameters) -> float:
    """Linear warm-up, then linear decay towards zero (step counts from 1)."""
    if hp.warmup_steps and step <= hp.warmup_steps:
        return hp.learning_rate * step / hp.warmup_steps
    span = max(1, hp.total_steps - hp.warmup_steps)
    return hp.learning_rate * (1.0 - (step - hp.warmup_steps - 1) / span)


def _cpu_count() -> int:
    """The cores this process may run on: a container's or taskset's share, not the host's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()  # CPU: fp32 (bf16 autocast there is slower on most CPUs)


def check_environment(config: FineTuneConfig) -> None:
    """Refuses what this runner cannot do here, before anything heavy loads."""
    world = int(os.environ.get("WORLD_SIZE", "1") or "1")
    if world > 1:
        raise FineTuneError(
            f"this fine-tune runner trains on one device; the job was started with WORLD_SIZE={world} "
            "(ask for one GPU per node and one node)"
        )
    if config.method == "qlora":
        if not torch.cuda.is_available():
            raise FineTuneError(
                "qlora needs a CUDA GPU: its 4-bit weights come from bitsandbytes, which has no CPU "
                "training path; use method 'lora' on this node"
            )
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise FineTuneError(
                "qlora needs the bitsandbytes package on this node (pip install bitsandbytes)"
            ) from None


def _load_model(config: FineTuneConfig, device: torch.device) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    model: Any  # a PreTrainedModel, then a PeftModel: the stubs see no common type

    if config.method == "qlora":
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        model = AutoModelForCausalLM.from_pretrained(
            config.model_path, quantization_config=quantization, device_map={"": 0}
        )
        model = prepare_model_for_kbit_training(model)
    else:
        # fp32 master weights: the CPU trains in fp32, and on a GPU autocast gives bf16 speed.
        model = AutoModelForCausalLM.from_pretrained(config.model_path, dtype=torch.float32)
        model = model.to(device)
    model.config.use_cache = False  # the KV cache only costs memory in training
    if config.method in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_alpha or 2 * config.lora_rank,
            lora_dropout=config.lora_dropout,
            target_modules=config.target_modules,
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
    result: torch.nn.Module = model
    return result


def _validation_loss(
    model: torch.nn.Module,
    examples: list[TokenizedExample],
    batch_size: int,
    pad_id: int,
    shortcuts: Shortcuts,
    device: torch.device,
) -> float:
    """Mean loss per learned token over the whole validation set."""
    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad(), _autocast(device):
        for start in range(0, len(examples), batch_size):
            batch = shortcuts.batch(examples[start : start + batch_size], pad_id)
            summed, n = loss_sum(model, batch, shortcuts, device)
            total += float(summed)
            tokens += n
    model.train()
    return total / max(1, tokens)


def run(config: FineTuneConfig, stop: StopRequest | None = None) -> dict[str, Any]:
    """Trains, resuming from the newest checkpoint if there is one; returns what result.json holds."""
    stop = stop or StopRequest()
    started = time.monotonic()
    check_environment(config)
    if not os.environ.get("OMP_NUM_THREADS"):  # an operator's (or the agent's) choice stands
        torch.set_num_threads(_cpu_count())  # the slot's cores are the job's alone
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(config.model_path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise FineTuneError("the model's tokenizer has neither a pad nor an end-of-sequence token")
    train, dropped = tokenize_all(tokenizer, load_conversations(config.train_file), config.max_seq_length)
    valid: list[TokenizedExample] = []
    if config.validation_file is not None:
        valid, _ = tokenize_all(tokenizer, load_conversations(config.validation_file), config.max_seq_length)
    hp = resolve(config, len(train))

    ckpt_dir = config.resolved_checkpoint_dir
    checkpoints.clear_partial(ckpt_dir)
    existing = checkpoints.list_checkpoints(ckpt_dir)
    config.output_dir.mkdir(parents=True, exist_ok=True)
    reporter = RunReporter(config.output_dir / "tensorboard", existing[-1].step if existing else 0)
    try:
        return _train(config, hp, tokenizer, pad_id, train, valid, dropped, existing, reporter, stop, started)
    finally:
        reporter.close()


def _train(
    config: FineTuneConfig,
    hp: Hyperparameters,
    tokenizer: Any,
    pad_id: int,
    train: list[TokenizedExample],
    valid: list[TokenizedExample],
    dropped: int,
    existing: list[checkpoints.Checkpoint],
    reporter: RunReporter,
    stop: StopRequest,
    started: float,
) -> dict[str, Any]:
    device = _device()
    random.seed(config.seed)
    torch.manual_seed(config.seed)  # LoRA's initial weights and dropout
    model = _load_model(config, device)
    params = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in params)
    n_total = sum(p.numel() for p in model.parameters())
    # fused: one kernel over every tensor rather than a dozen small ops per tensor (Trainer's default).
    fused = device.type in ("cpu", "cuda") and all(p.dtype in FUSED_DTYPES for p in params)
    optimizer = torch.optim.AdamW(
        params, lr=hp.learning_rate, weight_decay=config.weight_decay, fused=True if fused else None
    )
    shortcuts = probe(model, device)
    # What must match for a checkpoint to be this run's (paths differ between nodes, so none here).
    fingerprint = {
        "method": config.method,
        "examples": len(train),
        "total_steps": hp.total_steps,
        "batch_size": hp.batch_size,
        "lora_rank": config.lora_rank if config.method != "full" else 0,
        "seed": config.seed,
    }
    step = 0
    if existing:
        step = checkpoints.restore(existing[-1], model, optimizer, fingerprint)
        reporter.say(f"resuming from {existing[-1].path} (step {step} of {hp.total_steps})")
    train_tokens = sum(len(e.input_ids) for e in train)
    reporter.say(
        f"fine-tune {config.method}: {len(train)} examples ({train_tokens} tokens"
        + (
            f", {dropped} dropped: nothing left to learn after {config.max_seq_length} tokens"
            if dropped
            else ""
        )
        + f"), {hp.n_epochs} epochs x {hp.steps_per_epoch} steps = {hp.total_steps} steps, batch "
        f"{hp.batch_size}, lr {hp.learning_rate:.2e}; {device.type} with {torch.get_num_threads()} threads; "
        f"{n_trainable:,} of {n_total:,} weights trained"
        + f"; packing {'on' if shortcuts.packing else 'off'}, logits "
        + ("only where learned" if shortcuts.keep_logits else "at every position")
    )

    model.train()
    loop_started, first_step = time.monotonic(), step
    loss_value = float("nan")
    last_saved = step
    order: list[int] = []
    while step < hp.total_steps:
        step += 1
        epoch, position = divmod(step - 1, hp.steps_per_epoch)
        if position == 0 or not order:
            order = epoch_order(len(train), epoch, config.seed)
        chosen = [train[i] for i in order[position * hp.batch_size : (position + 1) * hp.batch_size]]
        batch = shortcuts.batch(chosen, pad_id)
        lr = learning_rate_at(step, hp)
        for group in optimizer.param_groups:
            group["lr"] = lr
        t0 = time.monotonic()
        with _autocast(device):
            summed, n_learned = loss_sum(model, batch, shortcuts, device)
        loss = summed / max(1, n_learned)  # the mean over the batch's learned tokens
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise FineTuneError(f"the loss became {loss_value} at step {step}; lower the learning rate")
        now = time.monotonic()
        per_step = (now - loop_started) / (step - first_step)
        epoch_done = step % hp.steps_per_epoch == 0
        valid_loss = (
            _validation_loss(model, valid, hp.batch_size, pad_id, shortcuts, device)
            if valid and epoch_done
            else None
        )
        reporter.step(
            step=step,
            total_steps=hp.total_steps,
            loss=loss_value,
            learning_rate=lr,
            epoch=step / hp.steps_per_epoch,
            tokens_per_second=batch.tokens / max(now - t0, 1e-9),
            eta_seconds=per_step * (hp.total_steps - step),
            valid_loss=valid_loss,
        )
        if step % config.save_every_steps == 0 or step == hp.total_steps or stop.requested:
            saved = checkpoints.save(
                config.resolved_checkpoint_dir, step, model, optimizer, fingerprint, config.keep_checkpoints
            )
            last_saved = step
            reporter.checkpoint(step, saved.path)
        if stop.requested and step < hp.total_steps:
            raise Interrupted(f"stopped by a signal after step {step}; checkpoint at step {last_saved}")

    train_seconds = time.monotonic() - loop_started
    result = _save_outputs(config, model, tokenizer)
    result.update(
        {
            "method": config.method,
            "total_steps": hp.total_steps,
            "trained_tokens": train_tokens * hp.n_epochs,
            # None when a restart found the last step already checkpointed and only wrote the outputs.
            "final_loss": loss_value if math.isfinite(loss_value) else None,
            "train_seconds": round(train_seconds, 2),
            "elapsed_seconds": round(time.monotonic() - started, 2),
            "hyperparameters": asdict(hp),
            "suffix": config.suffix,
        }
    )
    (config.output_dir / "result.json").write_text(json.dumps(result, indent=2))
    reporter.result(result)
    reporter.say(f"done: {hp.total_steps} steps in {train_seconds:.1f}s; outputs in {config.output_dir}")
    return result


def _save_outputs(config: FineTuneConfig, model: Any, tokenizer: Any) -> dict[str, Any]:
    """adapter/ (LoRA) and merged/ (always), each written aside and renamed into place, so a
    folder that exists is whole."""
    out: dict[str, Any] = {"adapter_dir": None, "merged_dir": None}
    model.eval()
    if config.method in ("lora", "qlora"):
        out["adapter_dir"] = str(_write_folder(config.output_dir / "adapter", model, tokenizer))
        if config.method == "qlora":
            merged = _merge_from_base(config.model_path, config.output_dir / "adapter")
        else:
            merged = model.merge_and_unload()
    else:
        merged = model
    merged.config.use_cache = True  # back on for inference
    out["merged_dir"] = str(_write_folder(config.output_dir / "merged", merged, tokenizer))
    return out


def _merge_from_base(base: Path, adapter: Path) -> Any:
    """A 4-bit model cannot take the adapter exactly: merge it into the base loaded in bf16."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16)
    return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()


def _write_folder(target: Path, model: Any, tokenizer: Any) -> Path:
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target
