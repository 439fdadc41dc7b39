"""Resource ids: a readable prefix and a time-ordered random part, so ids sort by creation."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def new_id(prefix: str, sep: str = "_") -> str:
    """`user_01j9...`: 48 bits of milliseconds then 80 random bits (a ULID in base32)."""
    stamp = _encode(time.time_ns() // 1_000_000, 10)
    rand = _encode(secrets.randbits(80), 16)
    return f"{prefix}{sep}{stamp}{rand}"


def fine_tuned_model_id(base_model: str, suffix: str, job_id: str) -> str:
    """The id a fine-tune's merged model is registered under: `ft:<base>:<suffix>:<job>` (OpenAI's
    shape), `ft:<base>:<job>` without a suffix. The gateway names it, the catalog registers it."""
    return ":".join(["ft", base_model, *([suffix] if suffix else []), job_id])


def adapter_model_id(fine_tuned_model: str) -> str:
    """The id of the LoRA adapter a fine-tune left beside its merged model."""
    return f"{fine_tuned_model}:adapter"
