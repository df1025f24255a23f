"""Soak: steady publishes for a long time to receivers that fail 10% of requests and hang 1%.

    python bench/soak.py                      # 10 minutes at 50 events/s (the issue's soak)
    python bench/soak.py --duration 60        # a short one
    python bench/soak.py --pg-url postgresql://postgres:…@127.0.0.1:5432/postgres
                                              # the same on PostgreSQL (a fresh database)

`tidings serve` on SQLite (or on a fresh PostgreSQL database, `--pg-url`) delivers to an
in-process receiver that answers 500 to 10% of requests and never answers (past the 2 s
timeout) to 1%; the retry schedule is shortened (1,2,4,8,16 s) so every delivery is settled
soon after the publishing stops. It reports:
lost (accepted events that never arrived with a 2xx: must be 0), duplicated (2xx arrivals
past the first per event), attempts, and publish→first-2xx latency percentiles. Results go
to bench/results/soak-<UTC timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (
    create_pg_database,
    drop_pg_database,
    free_port,
    start_tidings,
    stop_all,
    tidings_env,
)

TOKEN = "soak-operator-token"
KEY = "Zm9yLXRlc3RzLW9ubHktMzItYnl0ZXMtbG9uZy1rZXk="
RESULTS = Path(__file__).resolve().parent / "results"


class FlakyReceiver:
    """Answers 500 to `fail` of requests, hangs on `hang` of them, else 200; records 2xx."""

    def __init__(self, fail: float, hang: float, seed: int = 1) -> None:
        self.fail, self.hang = fail, hang
        self.rng = random.Random(seed)  # noqa: S311 - fault injection, not secrets
        self.ok: Counter[int] = Counter()
        self.first_ok: dict[int, float] = {}
        self.requests = 0
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests += 1
        roll = self.rng.random()
        if roll < self.hang:
            await asyncio.sleep(30)
        if roll < self.hang + self.fail:
            return web.Response(status=500)
        n = json.loads(body)["content"]["n"]
        self.ok[n] += 1
        self.first_ok.setdefault(n, time.time())
        return web.Response(status=200)

    def start(self) -> None:
        async def boot() -> None:
            app = web.Application()
            app.router.add_post("/{tail:.*}", self._handle)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()

        self._thread.start()
        asyncio.run_coroutine_threadsafe(boot(), self._loop).result(10)


async def publish_steadily(
    base: str, app_id: str, rate: float, duration: float
) -> dict[int, float]:
    """Publish {"n": i} at `rate` per second for `duration` s; returns accepted n -> time."""
    accepted: dict[int, float] = {}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(base_url=base, headers=headers) as session:

        async def one(n: int) -> None:
            sent = time.time()
            async with session.post(
                f"/v1/applications/{app_id}/events",
                json={"type": "item.created", "content": {"n": n}},
            ) as r:
                if r.status == 202:
                    accepted[n] = sent

        tasks = []
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < duration:
            tasks.append(asyncio.create_task(one(n)))
            n += 1
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
        await asyncio.gather(*tasks, return_exceptions=True)
    return accepted


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of publishing")
    parser.add_argument("--rate", type=float, default=50.0, help="events per second")
    parser.add_argument("--settle", type=float, default=120.0, help="seconds to wait afterwards")
    parser.add_argument(
        "--pg-url", help="a PostgreSQL server to run on (a database is created and dropped)"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tidings-soak-"))
    database_url = f"sqlite:///{work / 'soak.db'}"
    pg_database = None
    if args.pg_url:
        pg_database = f"tidings_soak_{int(time.time())}"
        database_url = create_pg_database(args.pg_url, pg_database)
    receiver = FlakyReceiver(fail=0.10, hang=0.01)
    receiver.start()
    port = free_port()
    env = tidings_env(
        database_url,
        TOKEN,
        KEY,
        port,
        TIDINGS_TIMEOUT_S="2",
        TIDINGS_RETRY_SCHEDULE="1,2,4,8,16,32",
    )
    try:
        serve = start_tidings("serve", "serve", env, work)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                import urllib.request

                urllib.request.urlopen(f"{base}/healthz", timeout=1)  # noqa: S310 - loopback
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        import urllib.request

        def call(path: str, body: dict[str, Any]) -> dict[str, Any]:
            request = urllib.request.Request(  # noqa: S310 - loopback
                base + path,
                json.dumps(body).encode(),
                {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as r:  # noqa: S310
                return dict(json.loads(r.read()))

        app_id = call("/v1/applications", {"name": "soak"})["id"]
        call(
            f"/v1/applications/{app_id}/webhooks",
            {"url": f"http://127.0.0.1:{receiver.port}/in", "events": ["*"]},
        )
        print(f"publishing {args.rate:g}/s for {args.duration:g} s; receiver fails 10%, hangs 1%")
        started = time.time()
        accepted = asyncio.run(publish_steadily(base, app_id, args.rate, args.duration))
        settle_until = time.monotonic() + args.settle
        while time.monotonic() < settle_until and not set(accepted) <= set(receiver.ok):
            time.sleep(1)
        lost = sorted(set(accepted) - set(receiver.ok))
        duplicated = sum(c - 1 for c in receiver.ok.values())
        latencies = sorted(
            receiver.first_ok[n] - t for n, t in accepted.items() if n in receiver.first_ok
        )
        q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
        result = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "duration_s": args.duration,
            "rate": args.rate,
            "published": len(accepted),
            "lost": len(lost),
            "lost_examples": lost[:20],
            "duplicated": duplicated,
            "requests_at_receiver": receiver.requests,
            "latency_ms": {
                "p50": q[49] * 1000,
                "p90": q[89] * 1000,
                "p99": q[98] * 1000,
                "max": latencies[-1] * 1000 if latencies else None,
            },
            "elapsed_s": round(time.time() - started, 1),
            "database": "postgresql" if pg_database else "sqlite",
            "serve_log": str(serve.log_path),
        }
    finally:
        stop_all()
        if pg_database:
            drop_pg_database(args.pg_url, pg_database)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"soak-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0 if result["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
