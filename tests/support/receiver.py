"""A real HTTP receiver on 127.0.0.1 for tests: answers as told, records what arrived.

Paths choose the behaviour: `/ok` 200, `/fail` 500, `/unavailable` 503 (with Retry-After),
`/redirect` 302, `/gone` 410, `/hang` never answers in time, `/close` drops the connection, `/slow` and `/slower` answer 200 after 50 and 200 ms,
`/script/<name>` answers the statuses queued with `script(name, [...])` then 200.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._scripts: dict[str, deque[int]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    def start(self) -> Receiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, name: str, statuses: list[int]) -> str:
        with self._lock:
            self._scripts[name].extend(statuses)
        return self.url(f"/script/{name}")

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._arrived.wait(left)
            return list(self.requests)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        with self._arrived:
            self.requests.append(Received(request.path, dict(request.headers), body, time.time()))
            self._arrived.notify_all()
        path = request.path
        if path.startswith("/script/"):
            with self._lock:
                queue = self._scripts[path.removeprefix("/script/")]
                status = queue.popleft() if queue else 200
            return web.Response(status=status, text=f"scripted {status}")
        if path == "/fail":
            return web.Response(status=500, text="boom")
        if path == "/unavailable":
            return web.Response(status=503, text="later", headers={"Retry-After": "120"})
        if path == "/redirect":
            raise web.HTTPFound(self.url("/ok"))
        if path == "/nul":  # PostgreSQL's text cannot hold NUL
            return web.Response(status=200, body=b"ok\x00done\xff")
        if path == "/gone":
            return web.Response(status=410, text="gone")
        if path == "/hang":
            await asyncio.sleep(30)
            return web.Response(text="too late")
        if path == "/close":
            assert request.transport is not None
            request.transport.close()
            await asyncio.sleep(1)
            return web.Response(text="unreachable")
        if path in ("/slow", "/slower"):
            await asyncio.sleep(0.05 if path == "/slow" else 0.2)
            return web.Response(text="ok")
        if path == "/big":
            return web.Response(text="x" * 50_000)
        return web.Response(text="ok")
