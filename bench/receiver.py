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
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import httptools


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


OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
NOT_FOUND = (
    b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nnot found"
)
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"


def json_response(value: Any) -> bytes:
    body = json.dumps(value).encode()
    head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


class Connection(asyncio.Protocol):
    """One client connection: HTTP/1.1 parsed by httptools (the C parser uvicorn uses) and
    answered by hand. A POST costs this receiver about a third of what aiohttp's web server
    did (bench/README.md, "The receiver"), so on 2 cores it takes less from the processes
    measured, as the issue's "minimal uvloop receiver" does. Clients send one request at a
    time per connection (no pipelining), so a late answer (/slow, /hang) keeps the order."""

    def __init__(self, recorder: Recorder, hang_s: float) -> None:
        self.recorder = recorder
        self.hang_s = hang_s
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.webhook_id = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._send(BAD_REQUEST, False)

    # -- httptools' callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.webhook_id = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 10 and name.lower() == b"webhook-id":
            self.webhook_id = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        keep = self.parser.should_keep_alive()
        method = self.parser.get_method()
        target = urlsplit(self.url.decode("latin-1"))
        if method == b"POST" and target.path == "/reset":
            self.recorder.reset()
            self._send(json_response({"ok": True}), keep)
        elif method == b"POST":
            self._receive(target.path, keep)
        elif method == b"GET":
            self._get(target.path, parse_qs(target.query), keep)
        else:
            self._send(NOT_FOUND, keep)

    def _receive(self, path: str, keep: bool) -> None:
        body = b"".join(self.body)
        self.recorder.add(self.webhook_id.decode("latin-1"), path, time.time(), body)
        delay = 0.0
        if path.startswith("/hang"):
            delay = self.hang_s
        elif path.startswith("/slow/"):
            with contextlib.suppress(ValueError, IndexError):
                delay = int(path.split("/")[2]) / 1000
        if delay:
            asyncio.get_running_loop().call_later(delay, self._send, OK, keep)
        else:
            self._send(OK, keep)

    def _get(self, path: str, query: dict[str, list[str]], keep: bool) -> None:
        def arg(name: str, default: str = "") -> str:
            return query.get(name, [default])[0]

        if path == "/healthz":
            self._send(OK, keep)
        elif path == "/stats":
            summary = self.recorder.summary(arg("prefix"), arg("detail") == "1")
            self._send(json_response(summary), keep)
        elif path == "/wait":
            n, prefix, timeout = int(arg("n")), arg("prefix"), float(arg("timeout", "30"))
            task = asyncio.ensure_future(self._wait(n, prefix, timeout, keep))
            WAITS.add(task)
            task.add_done_callback(WAITS.discard)
        else:
            self._send(NOT_FOUND, keep)

    async def _wait(self, n: int, prefix: str, seconds: float, keep: bool) -> None:
        await self.recorder.wait(n, prefix, seconds)
        self._send(json_response(self.recorder.summary(prefix)), keep)

    def _send(self, data: bytes, keep: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        if not keep:
            transport.close()


WAITS: set[asyncio.Future[None]] = set()  # /wait answers pending (kept from the collector)


async def serve(args: argparse.Namespace, recorder: Recorder) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Connection(recorder, args.hang_s),
        args.host,
        args.port,
        backlog=1024,
        reuse_address=True,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    parent = os.getppid()
    deadline = time.monotonic() + args.max_lifetime_s
    print(f"receiver listening on http://{args.host}:{args.port}", flush=True)
    while not stop.is_set() and time.monotonic() < deadline and os.getppid() == parent:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    server.close()  # requests still hanging on /hang are not waited for


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
