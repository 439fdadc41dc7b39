"""What authentication adds to a request at the gateway.

Against the real platform (gateway + auth + NATS, started here), it times the same client
sending, interleaved so all see the same machine state:
  (a) GET /api/v1/auth/me with an API key whose principal is in the gateway's warm cache;
  (b) the same route with no credentials, refused at the door (unauthenticated);
  (c) GET /healthz, the cheapest route, which is also left out of tracing.
The added latency of authentication is (a) - (b): same route, same routing, same request span,
differing only in the credential being resolved. (a) - (c) is printed too: it adds the request's
trace span and the route's own work on top. Target: under 0.3 ms added at the median.

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

        samples: dict[str, list[float]] = {"authed": [], "refused": [], "health": []}
        for _ in range(args.requests):
            t0 = time.perf_counter()
            client.get("/api/v1/auth/me", headers=auth)
            t1 = time.perf_counter()
            refused = client.get("/api/v1/auth/me")
            t2 = time.perf_counter()
            client.get("/healthz")
            t3 = time.perf_counter()
            assert refused.status_code == 401
            samples["authed"].append((t1 - t0) * 1000)
            samples["refused"].append((t2 - t1) * 1000)
            samples["health"].append((t3 - t2) * 1000)

    med = {name: statistics.median(values) for name, values in samples.items()}
    rows = [
        ("authed", "GET /api/v1/auth/me (API key, warm cache)"),
        ("refused", "GET /api/v1/auth/me (no credentials: 401)"),
        ("health", "GET /healthz (no auth, not traced)"),
    ]
    print(f"requests of each kind: {args.requests}")
    print(f"{'route':<44}{'p50 ms':>10}{'p99 ms':>10}")
    for name, label in rows:
        print(f"{label:<44}{med[name]:>10.3f}{percentile(samples[name], 0.99):>10.3f}")
    added = med["authed"] - med["refused"]
    verdict = "meets" if added < TARGET_MS else "MISSES"
    print(f"authentication adds {added:.3f} ms at the median ({verdict} the {TARGET_MS} ms target)")
    print(
        f"versus /healthz (tracing and the route's own work included): {med['authed'] - med['health']:.3f} ms"
    )


if __name__ == "__main__":
    main()
