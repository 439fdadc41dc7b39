"""One evaluation: each model in turn generates greedily for every prompt (batched, left-padded,
through its chat template), is scored, and is unloaded before the next; the results go to stdout
(a line per model and a SUANLI_RESULT line) and to `<output>/result.json`."""

from __future__ import annotations

import copy
import gc
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from suanli_trainer_agent.evaluate.config import EvalConfig, EvaluationError
from suanli_trainer_agent.evaluate.examples import EvalExample, load_examples
from suanli_trainer_agent.evaluate.metrics import accuracy, bleu, exact_match
from suanli_trainer_agent.finetune.data import Message
from suanli_trainer_agent.finetune.reporting import RESULT_PREFIX

RESULT_FILE = "result.json"
SAMPLES = 5

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Sample:
    prompt: str
    reference: str
    output: str


@dataclass(frozen=True, slots=True)
class ModelScore:
    name: str
    bleu: float
    exact_match: float
    accuracy: float | None  # None: the file has no multiple-choice rows
    examples: int
    seconds: float  # spent generating (loading the model not counted)
    samples: list[Sample]


def run(
    config: EvalConfig, examples: list[EvalExample] | None = None, out: TextIO | None = None
) -> dict[str, Any]:
    """Evaluates every model of the config on the same examples (read from config.file unless
    given); returns what result.json holds."""
    out = out or sys.stdout  # looked up now: tests and callers may have replaced it
    examples = examples if examples is not None else load_examples(config.file, config.max_examples)
    for name, path in config.model_paths():
        if not path.is_dir():
            raise EvaluationError(f"model {name!r}: {str(path)!r} is not a model folder on this node")
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    say = _printer(out)
    say(f"evaluating {len(examples)} examples of {config.file.name} on {device.type}")
    scores = []
    for name, path in config.model_paths():
        scores.append(evaluate_model(name, path, examples, config, device, say))
        s = scores[-1]
        shown = f"{s.accuracy:.1%}" if s.accuracy is not None else "n/a"
        say(
            f"{s.name}: BLEU {s.bleu:.2f}, exact match {s.exact_match:.1%}, accuracy {shown} "
            f"on {s.examples} examples in {s.seconds:.1f}s"
        )
    result = {"models": [asdict(s) for s in scores]}
    _write_json(config.output_dir / RESULT_FILE, result)
    say(RESULT_PREFIX + json.dumps(result))
    return result


def evaluate_model(
    name: str,
    path: Path,
    examples: list[EvalExample],
    config: EvalConfig,
    device: torch.device,
    say: Say,
) -> ModelScore:
    say(f"{name}: loading {path}")
    model, tokenizer = load_model(name, path, device)
    try:
        started = time.monotonic()
        outputs = generate(
            model,
            tokenizer,
            [e.prompt for e in examples],
            max_new_tokens=config.max_new_tokens,
            batch_size=config.batch_size,
            on_batch=lambda done: say(f"{name}: {done}/{len(examples)} examples"),
        )
        seconds = time.monotonic() - started
    finally:
        del model  # the next model loads into the memory this one held
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    references = [e.reference for e in examples]
    return ModelScore(
        name=name,
        bleu=round(bleu(outputs, references), 4),
        exact_match=round(exact_match(outputs, references), 4),
        accuracy=_rounded(accuracy(outputs, [e.question for e in examples])),
        examples=len(examples),
        seconds=round(seconds, 2),
        samples=[
            Sample(e.prompt_text, e.reference, o)
            for e, o in zip(examples[:SAMPLES], outputs[:SAMPLES], strict=True)
        ],
    )


def load_model(
    name: str, path: Path, device: torch.device
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise EvaluationError(f"cannot load model {name!r} from {str(path)!r}: {exc}") from None
    if not getattr(tokenizer, "chat_template", None):
        raise EvaluationError(f"model {name!r} has no chat template to render its prompts with")
    tokenizer.padding_side = "left"  # generation continues every row from its last token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device)  # type: ignore[arg-type]
    model.eval()
    return model, tokenizer


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[list[Message]],
    *,
    max_new_tokens: int,
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """Greedy replies, in the prompts' order. Prompts of similar length share a batch (less padding)."""
    texts = [_render(tokenizer, p) for p in prompts]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    settings = copy.deepcopy(model.generation_config)
    settings.do_sample, settings.max_new_tokens = False, max_new_tokens
    settings.temperature = settings.top_p = settings.top_k = None  # sampling knobs greedy ignores
    settings.pad_token_id = tokenizer.pad_token_id
    outputs = [""] * len(texts)
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        encoded = tokenizer(
            [texts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False
        ).to(model.device)
        with torch.inference_mode():
            generated = model.generate(**encoded, generation_config=settings)  # type: ignore[operator]
        replies = generated[:, encoded["input_ids"].shape[1] :]
        for index, reply in zip(batch, replies, strict=True):
            outputs[index] = str(tokenizer.decode(reply, skip_special_tokens=True)).strip()
        if on_batch is not None:
            on_batch(min(start + batch_size, len(order)))
    return outputs


def _render(tokenizer: PreTrainedTokenizerBase, prompt: list[Message]) -> str:
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    if not isinstance(text, str):
        raise EvaluationError("the model's chat template did not render text")
    return text


def _printer(out: TextIO) -> Say:
    def say(text: str) -> None:
        print(text, file=out, flush=True)

    return say


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _write_json(path: Path, value: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(partial, path)  # the agent never reads a half-written result
