"""`python -m suanli_trainer_agent.finetune [--config FILE]`: the process a trainer agent starts for a
fine-tune job. Exit codes: 0 done, 1 crashed, 2 refused (bad config, data or environment), 143
stopped by SIGTERM after saving a checkpoint. On failure the reason is the last stderr line, which
the agent reports as the job's message.
"""

from __future__ import annotations

import argparse
import signal
import sys
import traceback
from pathlib import Path
from types import FrameType

from suanli_trainer_agent.finetune.config import load_config
from suanli_trainer_agent.finetune.errors import FineTuneError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m suanli_trainer_agent.finetune", description=__doc__)
    parser.add_argument(
        "--config",
        type=Path,
        help="JSON file with a FineTuneConfig; paths it leaves out come from SUANLI_MODEL_PATH, "
        "SUANLI_DATASET_PATH, SUANLI_OUTPUT_PATH and SUANLI_CKPT_PATH (without it: the JSON in "
        "SUANLI_FINETUNE_CONFIG, or the env alone)",
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except FineTuneError as exc:
        return fail(f"fine-tune refused: {exc}", 2)
    try:
        # Heavy imports (torch, transformers) only once the config is known to be good.
        from suanli_trainer_agent.finetune.train import Interrupted, StopRequest, run
    except ImportError as exc:
        return fail(f"fine-tune refused: {exc} (install suanli-trainer-agent[finetune])", 2)

    stop = StopRequest()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.requested = True  # the loop saves a checkpoint after the current step and stops

    signal.signal(signal.SIGTERM, on_term)
    try:
        run(config, stop)
    except Interrupted as exc:
        return fail(f"fine-tune stopped: {exc}", 143)
    except FineTuneError as exc:
        return fail(f"fine-tune failed: {exc}", 2)
    except Exception as exc:
        sys.stdout.flush()
        traceback.print_exc()
        return fail(f"fine-tune crashed: {type(exc).__name__}: {exc}", 1)
    return 0


def fail(message: str, code: int) -> int:
    """Prints why a runner stopped as its last stderr line (what the agent reports); the exit code."""
    sys.stdout.flush()  # the reason must come after every progress line
    print(message, file=sys.stderr, flush=True)
    return code
