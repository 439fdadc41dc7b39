"""Seed models: the tiny test model and the SmolLM2 conversion load with transformers and
generate; the service registers a seed `registering` -> `ready` in the background."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from suanli_catalog.seed import MARKER, TINY, build_once
from suanli_common.proto.suanli.v1 import catalog_pb2


def test_tiny_model_loads_and_generates(tiny_model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert (tiny_model_dir / MARKER).is_file()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.head_dim == 64 and model.config.model_type == "qwen2"
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hello"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert out.shape[1] == prompt["input_ids"].shape[1] + 3


async def test_a_built_seed_is_reused(tiny_model_dir: Path) -> None:
    stamp = (tiny_model_dir / MARKER).stat().st_mtime_ns
    assert await build_once(TINY, tiny_model_dir) == tiny_model_dir
    assert (tiny_model_dir / MARKER).stat().st_mtime_ns == stamp


async def test_seed_registers_in_the_background(start_catalog: Any, tiny_model_dir: Path) -> None:
    catalog = await start_catalog(seeds=(TINY,), models_dir=tiny_model_dir.parent)
    request = catalog_pb2.GetModelRequest(caller_id="user_anyone", model_id=TINY.id)
    await asyncio.wait_for(catalog.running.seeding, 60)
    model = await catalog.stub.GetModel(request)
    assert model.state == catalog_pb2.MODEL_STATE_READY and model.owner_id == "system"
    assert model.visibility == catalog_pb2.VISIBILITY_PUBLIC and model.path == str(tiny_model_dir)


def test_smollm2_conversion_answers_a_chat_prompt(smollm2_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    assert model.config.model_type == "llama" and 130e6 < model.num_parameters() < 140e6
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    reply = tokenizer.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    assert reply, "the converted model gave an empty reply"
    assert "paris" in reply.lower(), reply
