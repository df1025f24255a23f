"""The HTTP side of a delivery: one POST, its outcome, and the address policy at connect time.

Failures are named the way a person fixing their receiver needs them:

    timeout              "timed out after 10 s"
    refused target       "refused: the host resolves to 10.0.0.8, which is a private address"
    DNS                  "DNS lookup failed for hooks.example.com"
    TLS                  "TLS error: certificate verify failed …"
    connection           "connection failed: Connection refused"
    dropped              "the server closed the connection without answering"
    redirect             "redirects are not followed (Location: https://…)"
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from typing import Any, NamedTuple

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from tidings.domain import targets

RESPONSE_BODY_LIMIT = 10 * 1024


class Response(NamedTuple):
    status_code: int | None
    duration_ms: int
    error: str | None
    body: str | None
    retry_after: str | None


class TargetRefused(OSError):
    """The callback's host resolved to an address we do not send to."""


class PolicyResolver(AbstractResolver):
    """Resolves names, then refuses non-public addresses: the check is made on the very
    addresses aiohttp connects to, so a DNS answer that changes after creation (rebinding)
    cannot reach an internal service."""

    def __init__(self, allow_private: bool) -> None:
        self._inner = DefaultResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not self._allow_private:
            addresses = [ipaddress.ip_address(r["host"]) for r in results]
            problem = targets.resolved_problem(addresses, allow_private=False)
            if problem is not None:
                raise TargetRefused(problem)
        return results

    async def close(self) -> None:
        await self._inner.close()


class Sender:
    """Posts deliveries over one pooled aiohttp session (keep-alive)."""

    def __init__(
        self, *, timeout_s: float, allow_private: bool, require_https: bool, pool_size: int
    ) -> None:
        self.timeout_s = timeout_s
        self.allow_private = allow_private
        self.require_https = require_https
        self.pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None
        self._targets: dict[str, str | yarl.URL] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}  # a few: 1-30 s per webhook

    async def __aenter__(self) -> Sender:
        connector = aiohttp.TCPConnector(
            limit=self.pool_size,
            resolver=PolicyResolver(self.allow_private),
            ttl_dns_cache=10,
            enable_cleanup_closed=True,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            auto_decompress=True,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            # A receiver's cookies are never sent back, to it or anyone (and not handling
            # them is 10% less work per request).
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    def _target(self, url: str) -> str | yarl.URL:
        """Why `url` cannot be called now, before any network (its shape, or an IP host),
        or else the URL parsed for aiohttp. It depends on the URL alone, so it is remembered
        (names are checked again at every connection, by the resolver)."""
        target = self._targets.get(url)
        if target is None:
            problem = targets.url_problem(url, require_https=self.require_https)
            if problem is None:
                hostname = targets.hostname(url)
                problem = targets.host_problem(hostname, allow_private=self.allow_private)
            target = self._parsed(url) if problem is None else f"refused: {problem}"
            if len(self._targets) >= 10_000:
                self._targets.clear()
            self._targets[url] = target
        return target

    def _parsed(self, url: str) -> str | yarl.URL:
        try:
            return yarl.URL(url)
        except ValueError as exc:  # as aiohttp's own parsing would have failed the attempt
            return describe(exc, self.timeout_s, url)

    # Made once, not per request (as the parsed URL above): each is a few microseconds of
    # Python (measured: these two and the cookie jar were 12-18% of a request's CPU).
    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        return timeout

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], timeout_s: float | None = None
    ) -> Response:
        assert self._session is not None, "use `async with Sender(...)`"
        target = self._target(url)
        if isinstance(target, str):  # refused, or not a URL at all
            return Response(None, 0, target, None, None)
        limit = timeout_s or self.timeout_s
        started = time.perf_counter()
        try:
            async with self._session.post(
                target,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=self._timeout(limit),
            ) as response:
                text = await _read_excerpt(response)
                error = None
                if 300 <= response.status < 400:
                    location = response.headers.get("Location", "")
                    error = f"redirects are not followed (Location: {location[:500]})"
                return Response(
                    response.status,
                    _ms(started),
                    error,
                    text,
                    response.headers.get("Retry-After"),
                )
        except Exception as exc:
            return Response(None, _ms(started), describe(exc, limit, url), None, None)


async def _read_excerpt(response: aiohttp.ClientResponse) -> str:
    data = await response.content.read(RESPONSE_BODY_LIMIT)
    # NUL shown as U+FFFD like any undecodable byte: PostgreSQL's text cannot hold it.
    return data.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def describe(exc: BaseException, timeout_s: float, url: str) -> str:
    """A readable reason for a failed attempt."""
    host = targets.hostname(url)
    cause: Any = getattr(exc, "os_error", None) or exc.__cause__
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return f"timed out after {timeout_s:g} s"
    if isinstance(exc, TargetRefused) or isinstance(cause, TargetRefused):
        return f"refused: {cause if isinstance(cause, TargetRefused) else exc}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"DNS lookup failed for {host}"
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return f"TLS error: {cause or exc}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = getattr(exc.os_error, "strerror", None) or str(exc.os_error)
        return f"connection failed: {reason}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without answering"
    if isinstance(exc, aiohttp.ClientError):
        return f"request failed: {exc.__class__.__name__}: {exc}"[:500]
    return f"request failed: {exc.__class__.__name__}: {exc}"[:500]
