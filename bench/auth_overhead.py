"""What authentication adds to a request at the gateway.

Against the real platform (gateway + auth + NATS, started here), it times the same client
sending (a) an authenticated request with an API key whose principal is in the gateway's warm
cache and (b) an unauthenticated request to /healthz, interleaved so both see the same machine
state, and prints the medians, p99s and the difference. Target: under 0.3 ms added at the median.

    .venv/bin/python bench/auth_overhead.py [--requests 3000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from harness import running_platform

TARGET_MS = 0.3


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000, help="requests of each kind")
    args = parser.parse_args()

    with running_platform() as base_url, httpx.Client(base_url=base_url, timeout=10) as client:
        email, password = f"bench-{uuid.uuid4().hex[:8]}@example.com", "bench-password-1"
        client.post("/api/v1/auth/signup", json={"email": email, "password": password}).raise_for_status()
        token = client.post("/api/v1/auth/login", json={"email": email, "password": password}).json()
        key = client.post(
            "/api/v1/api-keys",
            json={"name": "bench"},
            headers={"Authorization": f"Bearer {token['access_token']}"},
        ).json()["key"]
        auth = {"Authorization": f"Bearer {key}"}

        for _ in range(200):  # warm the connection, the key cache and both code paths
            client.get("/api/v1/auth/me", headers=auth).raise_for_status()
            client.get("/healthz").raise_for_status()

        authed: list[float] = []
        plain: list[float] = []
        for _ in range(args.requests):
            t0 = time.perf_counter()
            client.get("/api/v1/auth/me", headers=auth)
            t1 = time.perf_counter()
            client.get("/healthz")
            t2 = time.perf_counter()
            authed.append((t1 - t0) * 1000)
            plain.append((t2 - t1) * 1000)

    med_a, med_p = statistics.median(authed), statistics.median(plain)
    added = med_a - med_p
    print(f"requests of each kind: {args.requests}")
    print(f"{'route':<38}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"{'GET /healthz (no auth)':<38}{med_p:>10.3f}{percentile(plain, 0.99):>10.3f}")
    print(f"{'GET /api/v1/auth/me (API key, warm)':<38}{med_a:>10.3f}{percentile(authed, 0.99):>10.3f}")
    verdict = "meets" if added < TARGET_MS else "MISSES"
    print(f"authentication adds {added:.3f} ms at the median ({verdict} the {TARGET_MS} ms target)")


if __name__ == "__main__":
    main()
