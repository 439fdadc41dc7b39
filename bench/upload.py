"""What a fine-tune upload costs, end to end, against a plain copy of the same file.

Against the real platform (started here), it writes a JSONL fine-tune file (OpenAI `messages`
format) into a temporary folder, then times (a) `cp` of that file on the same disk and (b) its
upload through `POST /v1/files`, which the gateway streams to the catalog, which validates it
(and counts its tokens with the seed model's tokenizer) on the way to the artifact store, and
(c) the same upload as an `assistants` document, which is not validated: the transport alone.
It prints MB/s of each, the ratio to cp, and the peak resident memory (VmHWM) of the gateway and the
catalog processes, whose memory must not grow with the file. Target: under 200 MB each.

    .venv/bin/python bench/upload.py [--megabytes 200]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from harness import running_platform

from suanli_common.testing import free_port

TARGET_RSS_MB = 200
# The seed models, built once per machine (the integration tests share them).
SEED_MODELS_CACHE = Path("/tmp/suanli-test-cache/seed-models")
MB = 1_000_000


def write_dataset(path: Path, size: int) -> int:
    """Distinct rows (so no layer can cheat with repetition) until `size` bytes; returns the rows."""
    rows = 0
    with path.open("w") as out:
        written = 0
        while written < size:
            row = {
                "messages": [
                    {"role": "system", "content": "You are a careful assistant for arithmetic questions."},
                    {"role": "user", "content": f"Example {rows}: what is {rows} times {rows % 97 + 3}?"},
                    {
                        "role": "assistant",
                        "content": f"{rows} times {rows % 97 + 3} is {rows * (rows % 97 + 3)}. "
                        "Multiply the first number by the second, digit by digit, and add the parts.",
                    },
                ]
            }
            line = json.dumps(row) + "\n"
            out.write(line)
            written += len(line)
            rows += 1
    return rows


def memory_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


class RssSampler:
    """The largest VmRSS seen while the upload runs (VmHWM also counts start-up)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak_kb = dict.fromkeys(pids, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                self.peak_kb[name] = max(self.peak_kb[name], memory_kb(pid, "VmRSS"))
            time.sleep(0.05)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def api_key(client: httpx.Client) -> str:
    email, password = f"bench-{uuid.uuid4().hex[:8]}@example.com", "bench-password-1"
    client.post("/api/v1/auth/signup", json={"email": email, "password": password}).raise_for_status()
    token = client.post("/api/v1/auth/login", json={"email": email, "password": password}).json()
    created = client.post(
        "/api/v1/api-keys",
        json={"name": "bench"},
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )
    created.raise_for_status()
    return str(created.json()["key"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--megabytes", type=int, default=200, help="size of the generated file (MB)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="suanli-bench-upload-"))
    home = work / "home"
    dataset = work / "train.jsonl"
    rows = write_dataset(dataset, args.megabytes * MB)
    size = dataset.stat().st_size
    env = {
        "SUANLI_HOME": str(home),
        "SUANLI_CATALOG_GRPC_PORT": str(free_port()),
        "SUANLI_SCHEDULER_GRPC_PORT": str(free_port()),
        "SUANLI_MODELS_DIR": str(SEED_MODELS_CACHE),
        "SUANLI_MAX_UPLOAD_BYTES": str(max(512 * 1024 * 1024, 2 * size)),
    }
    with (
        running_platform(env, timeout=600) as base_url,
        httpx.Client(base_url=base_url, timeout=3600) as client,
    ):
        pids = {name: int((home / "run" / f"{name}.pid").read_text()) for name in ("gateway", "catalog")}
        hwm_before = {name: memory_kb(pid, "VmHWM") for name, pid in pids.items()}
        key = api_key(client)

        t0 = time.perf_counter()
        subprocess.run(["cp", str(dataset), str(work / "copy.jsonl")], check=True)
        cp_s = time.perf_counter() - t0
        (work / "copy.jsonl").unlink()

        def upload(purpose: str) -> tuple[float, dict[str, Any]]:
            with dataset.open("rb") as handle:
                t0 = time.perf_counter()
                response = client.post(
                    "/v1/files",
                    files={"file": ("train.jsonl", handle, "application/jsonl")},
                    data={"purpose": purpose},
                    headers={"Authorization": f"Bearer {key}"},
                )
                seconds = time.perf_counter() - t0
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            return seconds, body

        with RssSampler(pids) as sampler:
            upload_s, stored = upload("fine-tune")
            plain_s, _ = upload("assistants")
        hwm_after = {name: memory_kb(pid, "VmHWM") for name, pid in pids.items()}

    assert stored["bytes"] == size and stored["validation"]["examples"] == rows, stored
    cp_rate, upload_rate = size / MB / cp_s, size / MB / upload_s
    print(
        f"file: {size / MB:.1f} MB, {rows} examples, {stored['validation']['tokens']} tokens "
        f"(tokenizer: {stored['validation']['tokenizer']})"
    )
    print(f"{'':<34}{'seconds':>10}{'MB/s':>10}")
    print(f"{'cp (same disk)':<34}{cp_s:>10.2f}{cp_rate:>10.1f}")
    print(f"{'POST /v1/files (+ validation)':<34}{upload_s:>10.2f}{upload_rate:>10.1f}")
    print(f"{'POST /v1/files (assistants: none)':<34}{plain_s:>10.2f}{size / MB / plain_s:>10.1f}")
    print(f"the validated upload is {cp_rate / upload_rate:.1f}x slower than cp")
    print(f"{'process':<12}{'VmHWM before MB':>18}{'VmRSS peak during MB':>22}{'VmHWM after MB':>17}")
    for name in pids:
        print(
            f"{name:<12}{hwm_before[name] / 1024:>18.1f}{sampler.peak_kb[name] / 1024:>22.1f}"
            f"{hwm_after[name] / 1024:>17.1f}"
        )
    worst = max(hwm_after.values()) / 1024
    verdict = "meets" if worst < TARGET_RSS_MB else "MISSES"
    print(f"peak RSS {worst:.1f} MB ({verdict} the {TARGET_RSS_MB} MB target per process)")


if __name__ == "__main__":
    main()
