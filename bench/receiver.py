"""A minimal webhook receiver for the benchmarks: answers 200 to every POST, and counts.

    python bench/receiver.py --port 9100 [--hang-s 30] [--stats-file out.json]

- `POST /anything`            -> 200 at once (the path is recorded, so one receiver serves many
                                  webhooks: `/hook/0`, `/hook/1`, ...).
- `POST /slow/<ms>/...`       -> 200 after <ms> milliseconds.
- `POST /hang...`             -> 200 after `--hang-s` seconds (longer than Tidings' timeout, so
                                  the sender gives up first).
- `GET /stats`                -> JSON summary; `?detail=1` adds every arrival.
- `GET /wait?n=N&prefix=/hook&timeout=S` -> the summary, once N distinct deliveries under that
                                  path prefix have arrived (or after S seconds).
- `POST /reset`               -> forget everything (between a ceiling run and a case).

Each arrival is recorded once per `webhook-id` (Tidings delivers at least once; duplicates are
counted apart) with its arrival time (`time.time()`, comparable across processes on this
machine) and, when the body's `content` carries `sent_at`, the publish->arrival latency.
On SIGTERM/SIGINT the full stats are written to `--stats-file` (if given) and the process
exits; it also exits by itself after `--max-lifetime-s`, or when its parent goes away.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Arrival:
    webhook_id: str
    path: str
    at: float
    sent_at: float | None


@dataclass
class Recorder:
    arrivals: list[Arrival] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    duplicates: int = 0
    total: int = 0
    bad_bodies: int = 0
    _waiters: list[tuple[int, str, asyncio.Future[None]]] = field(default_factory=list)
    _counts: dict[str, int] = field(default_factory=dict)  # distinct arrivals per path

    def reset(self) -> None:
        self.arrivals.clear()
        self.seen.clear()
        self._counts.clear()
        self.duplicates = self.total = self.bad_bodies = 0

    def add(self, webhook_id: str, path: str, at: float, body: bytes) -> None:
        self.total += 1
        if webhook_id in self.seen:
            self.duplicates += 1
            return
        self.seen.add(webhook_id)
        sent_at = None
        try:
            content = json.loads(body).get("content") or {}
            value = content.get("sent_at")
            sent_at = float(value) if value is not None else None
        except (ValueError, AttributeError, TypeError):
            self.bad_bodies += 1
        self.arrivals.append(Arrival(webhook_id, path, at, sent_at))
        self._counts[path] = self._counts.get(path, 0) + 1
        if self._waiters:
            self._wake()

    def count(self, prefix: str = "") -> int:
        if not prefix:
            return len(self.arrivals)
        return sum(n for p, n in self._counts.items() if p.startswith(prefix))

    def _wake(self) -> None:
        keep = []
        for n, prefix, fut in self._waiters:
            if fut.done():
                continue
            if self.count(prefix) >= n:
                fut.set_result(None)
            else:
                keep.append((n, prefix, fut))
        self._waiters = keep

    async def wait(self, n: int, prefix: str, seconds: float) -> None:
        if self.count(prefix) >= n:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((n, prefix, fut))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(fut, seconds)

    def summary(self, prefix: str = "", detail: bool = False) -> dict[str, Any]:
        chosen = [a for a in self.arrivals if a.path.startswith(prefix)]
        times = [a.at for a in chosen]
        out: dict[str, Any] = {
            "prefix": prefix,
            "count": len(chosen),
            "distinct_all_paths": len(self.arrivals),
            "total_requests": self.total,
            "duplicates": self.duplicates,
            "bad_bodies": self.bad_bodies,
            "first_at": min(times) if times else None,
            "last_at": max(times) if times else None,
            "per_path": dict(sorted(self._counts.items())),
        }
        if detail:
            out["arrivals"] = [[a.webhook_id, a.path, a.at, a.sent_at] for a in chosen]
        return out


def build_app(recorder: Recorder, hang_s: float) -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        at = time.time()
        path = request.path
        recorder.add(request.headers.get("webhook-id", ""), path, at, body)
        if path.startswith("/hang"):
            await asyncio.sleep(hang_s)
        elif path.startswith("/slow/"):
            with contextlib.suppress(ValueError, IndexError):
                await asyncio.sleep(int(path.split("/")[2]) / 1000)
        return web.Response(text="ok")

    async def stats(request: web.Request) -> web.Response:
        prefix = request.query.get("prefix", "")
        detail = request.query.get("detail") == "1"
        return web.json_response(recorder.summary(prefix, detail))

    async def wait(request: web.Request) -> web.Response:
        n = int(request.query["n"])
        prefix = request.query.get("prefix", "")
        timeout = float(request.query.get("timeout", "30"))
        await recorder.wait(n, prefix, timeout)
        return web.json_response(recorder.summary(prefix))

    async def reset(_request: web.Request) -> web.Response:
        recorder.reset()
        return web.json_response({"ok": True})

    async def health(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_get("/healthz", health)
    app.router.add_get("/stats", stats)
    app.router.add_get("/wait", wait)
    app.router.add_post("/reset", reset)
    app.router.add_post("/{tail:.*}", receive)
    return app


async def serve(args: argparse.Namespace, recorder: Recorder) -> None:
    # A short shutdown: requests still hanging on /hang are not waited for.
    runner = web.AppRunner(build_app(recorder, args.hang_s), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, backlog=1024, reuse_address=True)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    parent = os.getppid()
    deadline = time.monotonic() + args.max_lifetime_s
    print(f"receiver listening on http://{args.host}:{args.port}", flush=True)
    while not stop.is_set() and time.monotonic() < deadline and os.getppid() == parent:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--hang-s", type=float, default=30.0, help="how long /hang* paths wait")
    parser.add_argument("--stats-file", help="write the full stats here on SIGTERM")
    parser.add_argument("--max-lifetime-s", type=float, default=1800.0)
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the benchmark receiver listens on loopback only")
    recorder = Recorder()
    run_with_loop(serve(args, recorder), args.loop)
    if args.stats_file:
        with open(args.stats_file, "w") as handle:
            json.dump(recorder.summary(detail=True), handle)


def run_with_loop(coro: Any, loop: str) -> None:
    """Run `coro` on uvloop when asked (or, with "auto", when importable), else asyncio."""
    if loop in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                raise
        else:
            uvloop.run(coro)
            return
    asyncio.run(coro)


if __name__ == "__main__":
    main()
