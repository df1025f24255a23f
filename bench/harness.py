"""The benchmark's plumbing: processes that stop themselves, the receiver, the publishers.

Every process started here is a child that gets SIGTERM when the runner dies (Linux
`PR_SET_PDEATHSIG`), is recorded in `PROCESSES`, and is stopped by `stop_all()` (SIGTERM, a
bounded wait, then SIGKILL). Everything listens on and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp
import httptools

BENCH_DIR = Path(__file__).resolve().parent
LOCAL = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCAL, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Proc:
    """One child process with its output in a log file."""

    def __init__(
        self, name: str, args: Sequence[str], env: dict[str, str], log_dir: Path, cwd: Path
    ) -> None:
        self.name = name
        self.base = ""  # http://127.0.0.1:<port> for the processes that serve HTTP
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(  # noqa: S603 - our own commands
            list(args),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        PROCESSES.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def status_kb(self, field: str = "VmRSS") -> int | None:
        """A `/proc/<pid>/status` field in kB (VmRSS, VmHWM, ...)."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        except (OSError, ValueError):
            return None
        return None

    def exited(self) -> str:
        return f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}"

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=timeout_s)
        self._log.close()
        return self.popen.returncode

    async def wait_for_output(self, needle: str, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while needle not in self.output():
            if not self.alive():
                raise RuntimeError(self.exited())
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} never printed {needle!r}:\n{self.tail()}")
            await asyncio.sleep(0.05)

    async def wait_http(self, url: str, timeout_s: float = START_TIMEOUT_S) -> None:
        """Poll `url` until it answers 200."""
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while True:
                if not self.alive():
                    raise RuntimeError(self.exited())
                try:
                    async with session.get(url) as response:
                        if response.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name}: no 200 from {url}:\n{self.tail()}")
                await asyncio.sleep(0.05)


PROCESSES: list[Proc] = []


def stop_all() -> None:
    while PROCESSES:
        proc = PROCESSES.pop()
        try:
            proc.stop()
        except Exception as exc:  # keep stopping the others
            print(f"could not stop {proc.name} ({proc.pid}): {exc}", file=sys.stderr)


def stop_all_but(keep: Proc) -> None:
    """Stop what a case left running (after an error), keeping the shared receiver."""
    for proc in [p for p in PROCESSES if p is not keep]:
        proc.stop()
        forget(proc)


def forget(proc: Proc) -> None:
    if proc in PROCESSES:
        PROCESSES.remove(proc)


# -- Tidings processes -------------------------------------------------------------------


def tidings_env(
    db_url: str, token: str, key: str, port: int | None, **extra: str
) -> dict[str, str]:
    """The parent's environment minus any TIDINGS_*, plus what a benchmark process gets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env.update(
        {
            "TIDINGS_DATABASE_URL": db_url,
            "TIDINGS_OPERATOR_TOKEN": token,
            "TIDINGS_ENCRYPTION_KEY": key,
            "TIDINGS_ALLOW_PRIVATE_TARGETS": "1",
            "NO_COLOR": "1",
        }
    )
    if port is not None:
        env["TIDINGS_PORT"] = str(port)
    env.update(extra)
    return env


def start_tidings(name: str, command: str, env: dict[str, str], log_dir: Path) -> Proc:
    """`tidings <command>` (as `python -m tidings`, so it is the interpreter's own install)."""
    return Proc(name, [sys.executable, "-m", "tidings", command], env, log_dir, log_dir)


# -- PostgreSQL databases for a run ---------------------------------------------------------


def create_pg_database(server_url: str, name: str) -> str:
    """A fresh database `name` on the server at `server_url` (dropped first if it is left
    from an earlier run); its URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(server_url: str, name: str) -> None:
    """Drop database `name` (connections to it are ended first)."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- CPU used by processes, sampled --------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a live process has used (from /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def processes_named(prefix: str) -> list[int]:
    """The ids of the processes whose name (`/proc/<pid>/comm`) starts with `prefix`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().startswith(prefix):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class CpuWatch:
    """Samples the CPU seconds of some processes every `every_s` (wall clock `time.time()`,
    the receiver's clock for arrivals), so the CPU a process spent between two arrival
    times can be read afterwards: startup and shutdown are left out, unlike a before/after.
    """

    def __init__(
        self, pids: dict[str, int], every_s: float = 0.02, *, postgresql: bool = False
    ) -> None:
        self.pids = pids
        self.every_s = every_s
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._task: asyncio.Task[None] | None = None
        # PostgreSQL's own processes (server and backends), summed as "postgresql"; their
        # list is read again every 25 samples. A backend that exits takes its CPU along, so
        # this is right only while connections stay open (a drain's workers keep theirs).
        self._postgresql = postgresql
        self._pg_pids: list[int] = []
        self._count = 0

    def sample(self) -> None:
        got = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        if self._postgresql:
            if self._count % 25 == 0:
                self._pg_pids = processes_named("postgres")
            self._count += 1
            got["postgresql"] = sum(cpu_seconds(pid) or 0.0 for pid in self._pg_pids)
        self.samples.append((time.time(), {k: v for k, v in got.items() if v is not None}))

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.every_s)

    def __enter__(self) -> CpuWatch:
        self.sample()  # a sample before anything the caller times
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._task is not None:
            self._task.cancel()

    def _at(self, name: str, when: float) -> float | None:
        """CPU seconds of `name` at `when`, interpolated between the samples around it."""
        points = [(t, cpu[name]) for t, cpu in self.samples if name in cpu]
        for (t0, c0), (t1, c1) in itertools.pairwise(points):
            if t0 <= when <= t1:
                return c0 + (c1 - c0) * ((when - t0) / (t1 - t0) if t1 > t0 else 0.0)
        return None

    def between(self, start: float | None, end: float | None) -> dict[str, float]:
        """CPU seconds each process used from `start` to `end` (those sampled on both sides)."""
        if start is None or end is None:
            return {}
        used = {}
        for name in [*self.pids, "postgresql"]:
            before, after = self._at(name, start), self._at(name, end)
            if before is not None and after is not None:
                used[name] = after - before
        return used


def cpu_per_item_us(used: dict[str, float], count: int) -> dict[str, float]:
    """CPU microseconds per delivery (or request) for each process."""
    return {name: round(1e6 * s / count, 1) for name, s in used.items()} if count else {}


# -- the receiver ---------------------------------------------------------------------------


class Receiver:
    """Client of bench/receiver.py running as a child process."""

    def __init__(self, log_dir: Path, hang_s: float = 30.0, lifetime_s: float = 3600.0) -> None:
        self.port = free_port()
        self.base = f"http://{LOCAL}:{self.port}"
        args = [
            sys.executable,
            str(BENCH_DIR / "receiver.py"),
            "--port",
            str(self.port),
            "--hang-s",
            str(hang_s),
            "--max-lifetime-s",
            str(lifetime_s),
        ]
        self.proc = Proc("receiver", args, dict(os.environ), log_dir, log_dir)

    async def ready(self) -> None:
        await self.proc.wait_http(f"{self.base}/healthz")

    async def _get(self, path: str, timeout_s: float = 30.0) -> dict[str, Any]:
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(self.base + path) as response,
        ):
            response.raise_for_status()
            result: dict[str, Any] = await response.json()
            return result

    async def reset(self) -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.base + "/reset") as response,
        ):
            response.raise_for_status()

    async def stats(self, prefix: str = "", detail: bool = False) -> dict[str, Any]:
        return await self._get(f"/stats?prefix={prefix}&detail={1 if detail else 0}", 60)

    async def wait_for(
        self, n: int, timeout_s: float, prefix: str = "", watch: Sequence[Proc] = ()
    ) -> dict[str, Any]:
        """Wait until `n` distinct deliveries under `prefix` arrived, or `timeout_s` passed.

        Fails early if one of `watch` (the Tidings processes) exits.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            chunk = max(0.05, min(2.0, left))
            summary = await self._get(f"/wait?n={n}&prefix={prefix}&timeout={chunk}", chunk + 10)
            if summary["count"] >= n or left <= 0:
                summary["complete"] = summary["count"] >= n
                return summary
            for proc in watch:
                if not proc.alive():
                    raise RuntimeError(proc.exited())


async def run_ceiling(
    receiver: Receiver, n: int, log_dir: Path, loop: str = "auto"
) -> dict[str, Any]:
    """bench/ceiling.py against the receiver's /ceiling path, as its own process.

    The figure is taken like the cases': distinct arrivals / (last - first arrival).
    """
    await receiver.reset()
    args = [
        sys.executable,
        str(BENCH_DIR / "ceiling.py"),
        "--url",
        f"{receiver.base}/ceiling",
        "-n",
        str(n),
        "--loop",
        loop,
    ]
    proc = Proc(f"ceiling-{loop}", args, dict(os.environ), log_dir, log_dir)
    watch = CpuWatch({"ceiling": proc.pid, "receiver": receiver.proc.pid})
    try:
        with watch:
            while proc.alive():
                watch.sample()
                await asyncio.sleep(0.02)
    finally:
        proc.stop()
        forget(proc)
    lines = [ln for ln in proc.output().splitlines() if ln.startswith("{")]
    if proc.popen.returncode != 0 or not lines:
        raise RuntimeError(f"ceiling.py failed ({proc.popen.returncode}):\n{proc.tail()}")
    client = json.loads(lines[-1])
    stats = await receiver.stats("/ceiling")
    await receiver.reset()
    span = (stats["last_at"] or 0) - (stats["first_at"] or 0)
    return {
        "requests_per_s": stats["count"] / span if span > 0 else 0.0,
        "arrived": stats["count"],
        "span_s": span,
        "client": client,
        "cpu_us_per_request": cpu_per_item_us(
            watch.between(stats["first_at"], stats["last_at"]), stats["count"]
        ),
    }


# -- publishing over HTTP ------------------------------------------------------------------


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summarize_ms(values_s: Sequence[float]) -> dict[str, float | None]:
    ms = [v * 1000 for v in values_s]
    return {
        "p50_ms": _percentile(ms, 50),
        "p90_ms": _percentile(ms, 90),
        "p99_ms": _percentile(ms, 99),
        "max_ms": max(ms) if ms else None,
        "mean_ms": statistics.fmean(ms) if ms else None,
    }


class _Answer:
    """One HTTP/1.1 response as `httptools` parses it."""

    def __init__(self) -> None:
        self.body: list[bytes] = []
        self.done = False

    def on_body(self, chunk: bytes) -> None:
        self.body.append(chunk)

    def on_message_complete(self) -> None:
        self.done = True


class _Connection(asyncio.Protocol):
    """A keep-alive HTTP/1.1 connection for one request at a time: the publishers' client.

    aiohttp's client cost the benchmark ~200 us of CPU per publish, about 0.4 of a core
    at e2e's pace, taken from the two cores `serve` runs on; this costs ~40 us (see
    bench/README.md, session 8). Tidings' own sends still go through aiohttp, and so does
    the ceiling."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._answer = _Answer()
        self._parser = httptools.HttpResponseParser(self._answer)
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)
            return
        if self._answer.done and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result((self._parser.get_status_code(), b"".join(self._answer.body)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(exc or ConnectionResetError("the server closed the connection"))

    def _fail(self, exc: BaseException) -> None:
        self.lost = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    async def request(self, data: bytes, timeout_s: float) -> tuple[int, bytes]:
        assert self.transport is not None
        self._answer = _Answer()
        self._parser = httptools.HttpResponseParser(self._answer)
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await asyncio.wait_for(self._waiter, timeout_s)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _Pool:
    """Idle keep-alive connections to one host, opened as needed."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._idle: list[_Connection] = []
        self._all: list[_Connection] = []

    async def request(self, data: bytes, timeout_s: float = 60.0) -> tuple[int, bytes]:
        connection = self._idle.pop() if self._idle else None
        if connection is None or connection.lost:
            loop = asyncio.get_running_loop()
            _transport, connection = await loop.create_connection(_Connection, self.host, self.port)
            self._all.append(connection)
        try:
            answer = await connection.request(data, timeout_s)
        except BaseException:
            connection.close()
            raise
        self._idle.append(connection)
        return answer

    def close(self) -> None:
        for connection in self._all:
            connection.close()


class Publisher:
    """POSTs events as the operator: `n` as fast as `concurrency` clients go, or at a rate."""

    def __init__(
        self,
        base: str,
        token: str,
        app_id: str,
        content: Callable[[int], dict[str, Any]],
        event_type: Callable[[int], str] = lambda _seq: "item.created",
    ) -> None:
        url = urlsplit(base)
        self.host, self.port = url.hostname or LOCAL, url.port or 80
        self.path = f"/v1/applications/{app_id}/events"
        self.head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        ).encode()
        self.content = content
        self.event_type = event_type
        self.statuses: Counter[int | str] = Counter()
        self.request_s: list[float] = []
        self.first_error: str | None = None

    async def _one(self, pool: _Pool, seq: int) -> None:
        body = json.dumps({"type": self.event_type(seq), "content": self.content(seq)}).encode()
        data = b"%bContent-Length: %d\r\n\r\n%b" % (self.head, len(body), body)
        started = time.perf_counter()
        try:
            status, text = await pool.request(data)
            self.statuses[status] += 1
            if status != 202 and self.first_error is None:
                self.first_error = f"{status}: {text[:300].decode(errors='replace')}"
        except (OSError, TimeoutError, httptools.HttpParserError) as exc:
            self.statuses[exc.__class__.__name__] += 1
            self.first_error = self.first_error or f"{exc.__class__.__name__}: {exc}"
        self.request_s.append(time.perf_counter() - started)

    @contextlib.contextmanager
    def _session(self) -> Iterator[_Pool]:
        pool = _Pool(self.host, self.port)
        try:
            yield pool
        finally:
            pool.close()

    async def closed_loop(self, n: int, concurrency: int) -> dict[str, Any]:
        """`n` events from `concurrency` clients, each sending its next as soon as answered."""
        next_seq = 0

        async def client(session: _Pool) -> None:
            nonlocal next_seq
            while next_seq < n:
                seq = next_seq
                next_seq += 1
                await self._one(session, seq)

        with self._session() as session:
            first_at = time.time()
            started = time.perf_counter()
            await asyncio.gather(*(client(session) for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
        return self._report(first_at, elapsed)

    async def open_loop(self, rate: float, n: int, max_in_flight: int = 256) -> dict[str, Any]:
        """`n` events at a steady `rate` a second, whatever the answers' pace (up to a bound)."""
        gate = asyncio.Semaphore(max_in_flight)
        behind_s: list[float] = []

        async def one(session: _Pool, seq: int) -> None:
            try:
                await self._one(session, seq)
            finally:
                gate.release()

        with self._session() as session:
            first_at = time.time()
            started = time.perf_counter()
            tasks = []
            for seq in range(n):
                due = started + seq / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await gate.acquire()
                behind_s.append(max(0.0, time.perf_counter() - due))
                tasks.append(asyncio.create_task(one(session, seq)))
            await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - started
        report = self._report(first_at, elapsed)
        report["rate"] = rate
        report["sender_behind_max_ms"] = max(behind_s, default=0.0) * 1000
        return report

    def _report(self, first_at: float, elapsed: float) -> dict[str, Any]:
        accepted = self.statuses.get(202, 0)
        return {
            "first_at": first_at,
            "elapsed_s": elapsed,
            "accepted": accepted,
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "first_error": self.first_error,
            "accepted_per_s": accepted / elapsed if elapsed > 0 else 0.0,
            "request": summarize_ms(self.request_s),
        }
