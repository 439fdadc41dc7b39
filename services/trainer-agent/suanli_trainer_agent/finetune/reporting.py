"""What a run tells the world while it trains. The agent forwards stdout line by line to the job's
log stream, so machine-readable facts are single lines with a fixed prefix and a JSON body:

    SUANLI_METRICS {"step", "total_steps", "loss", "learning_rate", "epoch", "tokens_per_second",
                    "eta_seconds"[, "valid_loss"]}
    SUANLI_CHECKPOINT {"step", "path"}
    SUANLI_RESULT {"trained_tokens", "total_steps", "final_loss", "adapter_dir", "merged_dir", ...}

Everything else on stdout is for people. TensorBoard event files go to output_dir/tensorboard.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

METRICS_PREFIX = "SUANLI_METRICS "
CHECKPOINT_PREFIX = "SUANLI_CHECKPOINT "
RESULT_PREFIX = "SUANLI_RESULT "


def parse_metrics(line: str) -> dict[str, Any] | None:
    """The body of a SUANLI_METRICS line (what the scheduler/gateway call to read the log)."""
    if not line.startswith(METRICS_PREFIX):
        return None
    body = json.loads(line[len(METRICS_PREFIX) :])
    return body if isinstance(body, dict) else None


class RunReporter:
    def __init__(self, tensorboard_dir: Path, first_step: int, out: TextIO | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._out = out or sys.stdout  # looked up now: tests and callers may have replaced it
        # purge_step: a resumed run drops the events a killed attempt wrote after its last checkpoint.
        self._writer = SummaryWriter(str(tensorboard_dir), purge_step=first_step or None)

    def say(self, text: str) -> None:
        print(text, file=self._out, flush=True)

    def step(
        self,
        *,
        step: int,
        total_steps: int,
        loss: float,
        learning_rate: float,
        epoch: float,
        tokens_per_second: float,
        eta_seconds: float,
        valid_loss: float | None = None,
    ) -> None:
        body: dict[str, Any] = {
            "step": step,
            "total_steps": total_steps,
            "loss": round(loss, 6),
            "learning_rate": learning_rate,
            "epoch": round(epoch, 4),
            "tokens_per_second": round(tokens_per_second, 1),
            "eta_seconds": round(eta_seconds, 1),
        }
        if valid_loss is not None:
            body["valid_loss"] = round(valid_loss, 6)
        self.say(METRICS_PREFIX + json.dumps(body))
        valid = f" valid_loss {valid_loss:.4f}" if valid_loss is not None else ""
        self.say(
            f"step {step}/{total_steps} epoch {epoch:.2f} loss {loss:.4f}{valid} lr {learning_rate:.2e} "
            f"{tokens_per_second:.0f} tok/s eta {eta_seconds:.0f}s"
        )
        self._writer.add_scalar("train/loss", loss, step)
        self._writer.add_scalar("train/learning_rate", learning_rate, step)
        self._writer.add_scalar("train/tokens_per_second", tokens_per_second, step)
        if valid_loss is not None:
            self._writer.add_scalar("valid/loss", valid_loss, step)

    def checkpoint(self, step: int, path: Path) -> None:
        self.say(CHECKPOINT_PREFIX + json.dumps({"step": step, "path": str(path)}))
        self._writer.flush()

    def result(self, result: dict[str, Any]) -> None:
        self.say(RESULT_PREFIX + json.dumps(result))

    def close(self) -> None:
        self._writer.close()
