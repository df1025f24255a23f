"""The ceiling: how fast one Python process can POST signed webhooks to the receiver.

    python bench/ceiling.py --url http://127.0.0.1:9100/ceiling -n 10000 [--concurrency 64]

One aiohttp ClientSession with a keep-alive connector of `--concurrency` connections and as
many coroutines, each building a ~1 KB envelope (`tidings.domain.catalog.envelope_body`) and
signing it with both of Tidings' signatures (`tidings.domain.signing.delivery_headers`), as the
worker does for every delivery, but with no database, no queue and no secret decryption.
Prints one JSON object: requests, errors, elapsed seconds and requests/s (client side).
The benchmark runner divides by the receiver's first->last arrival instead, like its cases.

The event loop is uvloop when importable (`--loop auto`, the default), as in `tidings serve`
(uvicorn) and `tidings worker`; `--loop asyncio` shows the plain loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import aiohttp

from tidings import __version__
from tidings.domain.catalog import envelope_body
from tidings.domain.ids import new_id
from tidings.domain.signing import delivery_headers, generate_secret

PAD_TO_BYTES = 1024


def _pad(pad_to: int) -> str:
    sample = {"seq": 10**6, "sent_at": time.time(), "item_id": 1234567890 + 10**6, "pad": ""}
    return "x" * max(0, pad_to - len(envelope_body("item.created", sample, int(time.time()))))


PAD = _pad(PAD_TO_BYTES)


def content(seq: int) -> dict[str, Any]:
    """An event's content whose envelope is about 1 KB; `sent_at` is now (for latency)."""
    return {"seq": seq, "sent_at": time.time(), "item_id": 1234567890 + seq, "pad": PAD}


async def run(url: str, n: int, concurrency: int, secret: str) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=concurrency, ttl_dns_cache=10)
    timeout = aiohttp.ClientTimeout(total=30)
    user_agent = f"Tidings/{__version__}"
    next_seq = 0
    ok = errors = 0
    first_error: str | None = None

    async def one(session: aiohttp.ClientSession) -> None:
        nonlocal next_seq, ok, errors, first_error
        while next_seq < n:
            seq = next_seq
            next_seq += 1
            now = time.time()
            body = envelope_body("item.created", content(seq), int(now))
            headers = delivery_headers(
                delivery_id=new_id("dlv", now),
                timestamp=int(now),
                body=body,
                secrets=[secret],
                signature_header="Tidings-Signature",
                user_agent=user_agent,
            )
            try:
                async with session.post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    await response.read()
                    if 200 <= response.status < 300:
                        ok += 1
                    else:
                        errors += 1
                        first_error = first_error or f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors += 1
                first_error = first_error or f"{exc.__class__.__name__}: {exc}"

    async with aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
    ) as session:
        started = time.perf_counter()
        await asyncio.gather(*(one(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "requests": n,
        "ok": ok,
        "errors": errors,
        "first_error": first_error,
        "elapsed_s": elapsed,
        "requests_per_s": ok / elapsed if elapsed > 0 else 0.0,
        "concurrency": concurrency,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    args = parser.parse_args()
    if not args.url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        parser.error("the ceiling only ever targets a receiver on this machine (loopback)")
    coro = run(args.url, args.n, args.concurrency, generate_secret())
    loop = args.loop
    if loop == "auto":
        try:
            import uvloop
        except ImportError:
            loop = "asyncio"
        else:
            loop = "uvloop"
    if loop == "uvloop":
        import uvloop

        result = uvloop.run(coro)
    else:
        result = asyncio.run(coro)
    result["loop"] = loop
    print(json.dumps(result))


if __name__ == "__main__":
    main()
