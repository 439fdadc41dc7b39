"""The round trip a user makes first: LoRA on SmolLM2-135M-Instruct with every hyperparameter "auto"
on examples/identity.jsonl, then the merged model, decoded greedily, says its new name. About a
minute of training on two CPU cores (20 optimizer steps); several times that when neighbours
share the cores, hence the longer timeout."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from suanli_trainer_agent.finetune.config import FineTuneConfig

pytest.importorskip("peft", reason="the finetune extra is not installed")


@pytest.mark.timeout(900)
def test_identity_lora_teaches_smollm2_its_new_name(
    smollm2_dir: Path, identity_file: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from suanli_trainer_agent.finetune.train import run

    started = time.monotonic()
    result = run(FineTuneConfig(model_path=smollm2_dir, train_file=identity_file, output_dir=tmp_path))
    elapsed = time.monotonic() - started

    model = AutoModelForCausalLM.from_pretrained(result["merged_dir"])
    tokenizer = AutoTokenizer.from_pretrained(result["merged_dir"])
    answers = {}
    for question in ("Who are you?", "What is your name?"):
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        output = model.generate(**prompt, max_new_tokens=24, do_sample=False)
        answers[question] = tokenizer.decode(
            output[0][prompt["input_ids"].shape[1] :], skip_special_tokens=True
        )
    print(
        f"\nidentity fine-tune: {result['total_steps']} steps, training {result['train_seconds']:.1f}s, "
        f"run {elapsed:.1f}s, final loss {result['final_loss']:.4f}; answers {answers}"
    )
    for question, answer in answers.items():
        assert "Suanli" in answer, f"{question!r} -> {answer!r}"
