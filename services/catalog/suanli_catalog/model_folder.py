"""Inspection of a model folder before it is registered: the files a checkpoint needs (config,
tokenizer, weights; or an adapter's config and weights) and what they say (architecture,
parameter count, context length, chat template). Reads headers and JSON only, never weights."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suanli_common.errors import InvalidRequest

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1, "float64": 8}
SAFETENSORS_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I8": 1, "U8": 1, "I32": 4, "I64": 8}
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length")


@dataclass(frozen=True, slots=True)
class ModelFolderInfo:
    architecture: str
    parameter_count: int
    context_length: int
    chat_template: str
    size_bytes: int


def _refuse(message: str) -> InvalidRequest:
    return InvalidRequest(message, param="source", code="invalid_model_path")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _refuse(f"{path.name} in {path.parent} is not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _refuse(f"{path.name} in {path.parent} is not a JSON object")
    return data


def _weight_files(folder: Path, stem: str = "") -> list[Path]:
    files = sorted(folder.glob(f"{stem}*.safetensors")) or sorted(
        p for p in folder.glob(f"{stem}*.bin") if p.name != "training_args.bin"
    )
    return files


def _safetensors_parameters(path: Path) -> int:
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    total = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        count = 1
        for dim in entry["shape"]:
            count *= int(dim)
        total += count
    return total


def _parameter_count(weights: list[Path], dtype: str) -> int:
    if all(p.suffix == ".safetensors" for p in weights):
        try:
            return sum(_safetensors_parameters(p) for p in weights)
        except (OSError, ValueError, KeyError, struct.error) as exc:
            raise _refuse(f"a weights file is not valid safetensors: {exc}") from None
    # Pickled .bin weights are not opened (that would run their pickle); estimate from size.
    return sum(p.stat().st_size for p in weights) // DTYPE_BYTES.get(dtype, 4)


def _chat_template(folder: Path) -> str:
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config_path = folder / "tokenizer_config.json"
    if not config_path.is_file():
        return ""
    template = _read_json(config_path).get("chat_template", "")
    if isinstance(template, list):  # [{"name": "default", "template": "..."}, ...]
        named = {t.get("name"): t.get("template", "") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), "")
    return template if isinstance(template, str) else ""


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _existing_folder(folder: Path) -> None:
    if not folder.exists():
        raise _refuse(f"model path {folder} does not exist")
    if not folder.is_dir():
        raise _refuse(f"model path {folder} is not a directory")


def inspect_checkpoint(folder: Path) -> ModelFolderInfo:
    """A full model: config.json, tokenizer files, and *.safetensors or *.bin weights."""
    _existing_folder(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise _refuse(f"{folder} is not a model folder: config.json is missing")
    config = _read_json(config_path)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise _refuse(f"{folder} has no tokenizer (one of {', '.join(TOKENIZER_FILES)})")
    weights = _weight_files(folder)
    if not weights:
        raise _refuse(f"{folder} has no weights (*.safetensors or *.bin)")
    architectures = config.get("architectures") or []
    architecture = str(architectures[0]) if architectures else str(config.get("model_type", ""))
    if not architecture:
        raise _refuse(f"config.json in {folder} names no architecture or model_type")
    nested = config.get("text_config")
    text_config: dict[str, Any] = nested if isinstance(nested, dict) else config
    context = next((int(text_config[k]) for k in CONTEXT_KEYS if isinstance(text_config.get(k), int)), 0)
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "float32")
    return ModelFolderInfo(
        architecture=architecture,
        parameter_count=_parameter_count(weights, dtype),
        context_length=context,
        chat_template=_chat_template(folder),
        size_bytes=folder_size(folder),
    )


def inspect_adapter(folder: Path) -> ModelFolderInfo:
    """A LoRA adapter: adapter_config.json and adapter_model.(safetensors|bin)."""
    _existing_folder(folder)
    if not (folder / "adapter_config.json").is_file():
        raise _refuse(f"{folder} is not an adapter folder: adapter_config.json is missing")
    _read_json(folder / "adapter_config.json")
    weights = _weight_files(folder, "adapter_model")
    if not weights:
        raise _refuse(f"{folder} has no adapter weights (adapter_model.safetensors or .bin)")
    return ModelFolderInfo(
        architecture="",
        parameter_count=_parameter_count(weights, "float32"),
        context_length=0,
        chat_template=_chat_template(folder),
        size_bytes=folder_size(folder),
    )


def inspect_artifact(folder: Path) -> ModelFolderInfo:
    """Any folder with at least one file (what a job saved): only its size is known."""
    _existing_folder(folder)
    if not list_files(folder):
        raise _refuse(f"{folder} holds no files")
    return ModelFolderInfo(
        architecture="", parameter_count=0, context_length=0, chat_template="", size_bytes=folder_size(folder)
    )


def list_files(folder: Path) -> list[tuple[str, int]]:
    """(relative path, bytes) of every file, hidden markers excepted, in a stable order."""
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            files.append((relative.as_posix(), path.stat().st_size))
    return files
