"""`python -m suanli_trainer_agent.evaluate [--config FILE]`: the process a trainer agent starts for
an evaluation job. Exit codes: 0 done, 1 crashed, 2 refused (bad config, file or model). On failure
the reason is the last stderr line, which the agent reports as the job's message.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from suanli_trainer_agent.evaluate.config import EvaluationError, load_config
from suanli_trainer_agent.finetune.cli import fail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m suanli_trainer_agent.evaluate", description=__doc__)
    parser.add_argument(
        "--config",
        type=Path,
        help="JSON file with an EvalConfig; what it leaves out comes from SUANLI_MODEL_PATH (the first "
        "model), SUANLI_DATASET_PATH and SUANLI_OUTPUT_PATH (without it: the JSON in SUANLI_EVAL_CONFIG)",
    )
    args = parser.parse_args(argv)
    try:
        from suanli_trainer_agent.evaluate.examples import load_examples

        config = load_config(args.config)
        examples = load_examples(config.file, config.max_examples)
    except EvaluationError as exc:
        return fail(f"evaluation refused: {exc}", 2)
    except ImportError as exc:
        return fail(f"evaluation refused: {exc} (install suanli-trainer-agent[finetune])", 2)
    try:
        # Heavy imports (torch, transformers) only once the config and the file are known to be good.
        from suanli_trainer_agent.evaluate.run import run
    except ImportError as exc:
        return fail(f"evaluation refused: {exc} (install suanli-trainer-agent[finetune])", 2)
    try:
        run(config, examples)
    except EvaluationError as exc:
        return fail(f"evaluation refused: {exc}", 2)
    except Exception as exc:
        sys.stdout.flush()
        traceback.print_exc()
        return fail(f"evaluation crashed: {type(exc).__name__}: {exc}", 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
