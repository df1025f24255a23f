"""The delivery engine against real receivers on 127.0.0.1, on SQLite and PostgreSQL.

Time-dependent rules move an injected clock; the clock starts at the real time, so that the
`standardwebhooks` package (which checks timestamps against the real clock) can verify.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import random
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.integration.conftest import Api, make_settings
from tests.support.receiver import Receiver
from tidings.api.app import create_app
from tidings.clock import ManualClock, SystemClock
from tidings.config import Settings
from tidings.delivery.worker import Worker
from tidings.store import queue
from tidings.store.tables import deliveries, webhooks


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=time.time())


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, allow_private_targets=True, timeout_s=1.0)


@pytest.fixture
def worker(api: Api, clock: ManualClock) -> Worker:
    return make_worker(api, clock)


def make_worker(api: Api, clock: ManualClock, worker_id: str = "w1") -> Worker:
    ctx = api.context
    return Worker(ctx.db, ctx.settings, ctx.box, clock, worker_id=worker_id, rng=random.Random(7))


def deliver(worker: Worker) -> int:
    return asyncio.run(worker.run_once())


def delivery_list(api: Api, **params: str) -> list[dict]:
    url = f"/v1/applications/{api.app_id}/deliveries"
    return list(api.call("GET", url, api.admin, params=params).json()["data"])


def delivery(api: Api, delivery_id: str) -> dict:
    url = f"/v1/applications/{api.app_id}/deliveries/{delivery_id}"
    return dict(api.call("GET", url, api.admin).json())


def only_delivery(api: Api) -> dict:
    (row,) = delivery_list(api)
    return delivery(api, row["id"])


def std_verify(secret: str, request) -> dict:
    return dict(Webhook(secret).verify(request.body, request.headers))


def test_numbers_reach_the_receiver_exactly_as_published(
    api: Api, worker: Worker, receiver: Receiver
) -> None:
    """Stored and sent JSON keeps every digit: an integer beyond 64 bits, a float, unicode."""
    api.create_webhook(url=receiver.url("/ok"), events=["item.created"])
    content = {"big": 10**30, "neg": -(2**70), "f": 0.1, "e": 1e16, "s": "Zoë \u2028"}
    assert api.publish("item.created", content).status_code == 202
    assert deliver(worker) == 1
    (request,) = receiver.requests
    assert json.loads(request.body)["content"] == content
    assert b'"big":1000000000000000000000000000000' in request.body


def test_delivers_the_envelope_signed_both_ways(
    api: Api, worker: Worker, receiver: Receiver
) -> None:
    wh = api.create_webhook(
        url=receiver.url("/ok"), events=["item.created"], headers={"X-Team": "orders"}
    )
    event_id = api.publish("item.created", {"item_id": 42, "name": "Zoë"}).json()["id"]
    assert deliver(worker) == 1
    (request,) = receiver.requests
    envelope = json.loads(request.body)
    assert list(envelope) == ["content", "timestamp", "type"]
    assert envelope == {
        "content": {"item_id": 42, "name": "Zoë"},
        "timestamp": envelope["timestamp"],
        "type": "item.created",
    }
    assert abs(envelope["timestamp"] - time.time()) < 60
    h = {k.lower(): v for k, v in request.headers.items()}
    assert h["content-type"] == "application/json"
    assert h["user-agent"].startswith("Tidings/")
    assert h["x-team"] == "orders"
    assert std_verify(wh["secret"], request) == envelope
    key = base64.b64decode(wh["secret"].removeprefix("whsec_"))
    assert (
        h["tidings-signature"]
        == "v1=" + hmac.new(key, request.body, hashlib.sha256).hexdigest().upper()
    )
    detail = only_delivery(api)
    assert detail["webhook_id"] == wh["id"] and detail["event_id"] == event_id
    assert h["webhook-id"] == detail["id"]
    assert (detail["status"], detail["attempt_count"], detail["last_status_code"]) == (
        "succeeded",
        1,
        200,
    )
    (attempt,) = detail["attempts"]
    assert (
        attempt["status_code"] == 200
        and attempt["response_body"] == "ok"
        and attempt["error"] is None
    )
    assert attempt["request_headers"]["webhook-id"] == detail["id"]


def test_fails_then_succeeds_with_one_stable_webhook_id(
    api: Api, worker: Worker, receiver: Receiver, clock: ManualClock
) -> None:
    wh = api.create_webhook(url=receiver.script("flaky", [500, 503]), events=["*"])
    api.publish("item.created", {"n": 1})
    deliver(worker)
    first = only_delivery(api)
    assert (first["status"], first["attempt_count"], first["last_status_code"]) == (
        "pending",
        1,
        500,
    )
    due = datetime.fromisoformat(first["next_attempt_at"]).timestamp()
    assert 8 - 0.01 <= due - clock.now() <= 12 + 0.01  # 10 s ± 20%
    assert deliver(worker) == 0  # not due yet
    clock.advance(12.1)
    deliver(worker)
    second = only_delivery(api)
    assert (second["status"], second["last_status_code"]) == ("pending", 503)
    clock.advance(2 * 60 + 1)  # a 503 with Retry-After: 120 waits 1x..2x the scheduled 60 s
    deliver(worker)
    third = only_delivery(api)
    assert (third["status"], third["attempt_count"]) == ("succeeded", 3)
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert ids == {third["id"]} and len(receiver.requests) == 3
    for request in receiver.requests:
        std_verify(wh["secret"], request)
    assert [a["status_code"] for a in third["attempts"]] == [500, 503, 200]


def test_retries_until_the_schedule_is_exhausted_then_fails(
    api: Api, receiver: Receiver, clock: ManualClock
) -> None:
    api.context.settings = api.context.settings.model_copy(update={"retry_schedule": (5, 5)})
    worker = make_worker(api, clock)
    api.create_webhook(url=receiver.url("/fail"), events=["*"])
    api.publish("item.created")
    for _ in range(3):
        assert deliver(worker) == 1
        clock.advance(7)
    assert deliver(worker) == 0
    detail = only_delivery(api)
    assert (detail["status"], detail["attempt_count"], detail["next_attempt_at"]) == (
        "failed",
        3,
        None,
    )
    assert [a["status_code"] for a in detail["attempts"]] == [500, 500, 500]
    assert detail["attempts"][0]["response_body"] == "boom"


def test_default_schedule_spans_one_to_two_days(
    api: Api, receiver: Receiver, clock: ManualClock
) -> None:
    worker = make_worker(api, clock)
    api.create_webhook(url=receiver.url("/fail"), events=["*"])
    api.publish("item.created")
    start = clock.now()
    attempts = 0
    while deliver(worker):
        attempts += 1
        due = only_delivery(api)["next_attempt_at"]
        if due is None:
            break
        clock.advance(datetime.fromisoformat(due).timestamp() - clock.now() + 0.01)
    assert attempts == 12
    assert only_delivery(api)["status"] == "failed"
    assert 86400 <= clock.now() - start <= 2 * 86400


def test_manual_retry_of_a_failed_delivery(
    api: Api, receiver: Receiver, clock: ManualClock
) -> None:
    api.context.settings = api.context.settings.model_copy(update={"retry_schedule": (1,)})
    worker = make_worker(api, clock)
    url = receiver.script("later", [500, 500])
    api.create_webhook(url=url, events=["*"])
    api.publish("item.created")
    deliver(worker)
    clock.advance(2)
    deliver(worker)
    failed = only_delivery(api)
    assert failed["status"] == "failed"
    response = api.call(
        "POST", f"/v1/applications/{api.app_id}/deliveries/{failed['id']}/retry", api.admin
    )
    assert response.status_code == 202
    assert deliver(worker) == 1
    done = only_delivery(api)
    assert (done["status"], done["attempt_count"], done["id"]) == ("succeeded", 3, failed["id"])
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1


def test_recover_requeues_failed_deliveries_since_a_time(
    api: Api, receiver: Receiver, clock: ManualClock
) -> None:
    api.context.settings = api.context.settings.model_copy(update={"retry_schedule": (1,)})
    worker = make_worker(api, clock)
    wh = api.create_webhook(url=receiver.script("down", [500] * 6), events=["*"])
    for n in range(3):
        api.publish("item.created", {"n": n})
    deliver(worker)
    clock.advance(2)
    deliver(worker)
    assert {d["status"] for d in delivery_list(api)} == {"failed"}
    since = datetime.fromtimestamp(clock.now() - 3600, UTC).isoformat()
    response = api.call(
        "POST", f"{api.webhooks()}/{wh['id']}/recover", api.admin, json={"since": since}
    )
    assert response.json() == {"requeued": 3}
    assert deliver(worker) == 3
    assert {d["status"] for d in delivery_list(api)} == {"succeeded"}


def test_during_rotation_both_secrets_sign(api: Api, worker: Worker, receiver: Receiver) -> None:
    wh = api.create_webhook(url=receiver.url("/ok"), events=["*"])
    new = api.call("POST", f"{api.webhooks()}/{wh['id']}/rotate-secret", api.admin).json()["secret"]
    api.publish("item.created")
    deliver(worker)
    (request,) = receiver.requests
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert len(request.headers["Tidings-Signature"].split(",")) == 2
    std_verify(new, request)
    std_verify(wh["secret"], request)


def test_after_the_overlap_only_the_new_secret_signs(api: Api, receiver: Receiver) -> None:
    clock = ManualClock(start=time.time() - 24 * 3600 - 5)
    api.context.clock = clock
    worker = make_worker(api, clock)
    wh = api.create_webhook(url=receiver.url("/ok"), events=["*"])
    new = api.call("POST", f"{api.webhooks()}/{wh['id']}/rotate-secret", api.admin).json()["secret"]
    clock.advance(24 * 3600 + 1)  # now the real time again
    api.publish("item.created")
    deliver(worker)
    (request,) = receiver.requests
    assert len(request.headers["webhook-signature"].split(" ")) == 1
    std_verify(new, request)
    with pytest.raises(WebhookVerificationError):
        std_verify(wh["secret"], request)


def test_send_a_test(api: Api, worker: Worker, receiver: Receiver) -> None:
    wh = api.create_webhook(url=receiver.url("/ok"), events=["item.created"])
    response = api.call("POST", f"{api.webhooks()}/{wh['id']}/test", api.admin)
    assert response.status_code == 202
    deliver(worker)
    (request,) = receiver.requests
    envelope = std_verify(wh["secret"], request)
    assert envelope["type"] == "TEST_EVENT"
    content = envelope["content"]
    assert (content["item_id"], content["status"]) == (1234567890, 0)
    assert len(content["user_uuid"]) == 36
    assert only_delivery(api)["status"] == "succeeded"


@pytest.mark.parametrize(
    ("path", "error"),
    [
        pytest.param("/hang", "timed out after 1 s", id="receiver-hangs"),
        pytest.param("/redirect", "redirects are not followed", id="redirect-302"),
        pytest.param("/close", "closed the connection", id="connection-dropped"),
    ],
)
def test_failed_attempts_say_why(
    api: Api, worker: Worker, receiver: Receiver, path: str, error: str
) -> None:
    api.create_webhook(url=receiver.url(path), events=["*"])
    api.publish("item.created")
    deliver(worker)
    detail = only_delivery(api)
    assert detail["status"] == "pending"
    assert error in detail["attempts"][0]["error"]
    assert error in detail["last_error"]
    assert [r.path for r in receiver.requests] == [path]  # the redirect was not followed


def test_receiver_down(api: Api, worker: Worker) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api.create_webhook(url=f"http://127.0.0.1:{port}/hook", events=["*"])
    api.publish("item.created")
    deliver(worker)
    detail = only_delivery(api)
    assert detail["status"] == "pending"
    assert detail["last_error"].startswith("connection failed")
    assert detail["attempts"][0]["status_code"] is None


def test_response_body_is_cut_at_10_kb(api: Api, worker: Worker, receiver: Receiver) -> None:
    api.create_webhook(url=receiver.url("/big"), events=["*"])
    api.publish("item.created")
    deliver(worker)
    assert len(only_delivery(api)["attempts"][0]["response_body"]) == 10 * 1024


def test_a_response_body_with_nul_bytes_is_recorded(
    api: Api, worker: Worker, receiver: Receiver
) -> None:
    api.create_webhook(url=receiver.url("/nul"), events=["*"])
    api.publish("item.created")
    deliver(worker)
    detail = only_delivery(api)
    assert detail["status"] == "succeeded"
    assert detail["attempts"][0]["response_body"] == "ok\ufffddone\ufffd"


def test_gone_disables_the_webhook_and_tells_the_others(
    api: Api, worker: Worker, receiver: Receiver
) -> None:
    gone = api.create_webhook(url=receiver.url("/gone"), events=["item.created"])
    ops = api.create_webhook(url=receiver.url("/ok"), events=["webhook.disabled"])
    api.publish("item.created")
    api.publish("item.created")
    deliver(worker)
    hook = api.call("GET", f"{api.webhooks()}/{gone['id']}", api.admin).json()
    assert hook["enabled"] is False and "410" in hook["disabled_reason"]
    statuses = sorted(d["status"] for d in delivery_list(api, webhook_id=gone["id"]))
    assert statuses == ["failed", "failed"]
    deliver(worker)
    told = [r for r in receiver.requests if r.path == "/ok"]
    assert len(told) == 1
    envelope = std_verify(ops["secret"], told[0])
    assert envelope["type"] == "webhook.disabled"
    assert envelope["content"] == {
        "webhook_id": gone["id"],
        "url": gone["url"],
        "reason": hook["disabled_reason"],
    }


def test_webhook_disabled_after_claim_is_not_called(
    api: Api, worker: Worker, receiver: Receiver
) -> None:
    wh = api.create_webhook(url=receiver.url("/ok"), events=["*"])
    api.publish("item.created")
    with api.context.db.write() as conn:
        conn.execute(update(webhooks).where(webhooks.c.id == wh["id"]).values(enabled=False))
    deliver(worker)
    assert receiver.requests == []
    detail = only_delivery(api)
    assert (detail["status"], detail["last_error"]) == ("failed", "the webhook is disabled")


def test_auto_disable_after_five_days_of_failures(
    api: Api, receiver: Receiver, clock: ManualClock
) -> None:
    worker = make_worker(api, clock)
    wh = api.create_webhook(url=receiver.url("/fail"), events=["*"])
    api.publish("item.created")
    deliver(worker)
    clock.advance(4 * 86400)
    worker.housekeeping()
    assert api.call("GET", f"{api.webhooks()}/{wh['id']}", api.admin).json()["enabled"] is True
    clock.advance(86400 + 1)
    worker.housekeeping()
    hook = api.call("GET", f"{api.webhooks()}/{wh['id']}", api.admin).json()
    assert hook["enabled"] is False and "5 days" in hook["disabled_reason"]
    assert only_delivery(api)["status"] == "failed"


def test_a_success_resets_the_failing_streak(
    api: Api, receiver: Receiver, clock: ManualClock
) -> None:
    worker = make_worker(api, clock)
    wh = api.create_webhook(url=receiver.script("mixed", [500]), events=["*"])
    api.publish("item.created")
    deliver(worker)
    clock.advance(4 * 86400)
    api.publish("item.created")
    deliver(worker)  # both due: the first retry and the new one succeed
    clock.advance(2 * 86400)
    worker.housekeeping()
    assert api.call("GET", f"{api.webhooks()}/{wh['id']}", api.admin).json()["enabled"] is True


def test_an_expired_lease_lets_another_worker_deliver(
    api: Api, receiver: Receiver, clock: ManualClock
) -> None:
    api.create_webhook(url=receiver.url("/ok"), events=["*"])
    api.publish("item.created")
    with api.context.db.write() as conn:  # worker "dead" claims it, then dies
        (job,) = queue.claim(conn, "dead", clock.now(), lease_s=30, limit=10)
    other = make_worker(api, clock, "alive")
    assert deliver(other) == 0
    other.housekeeping()
    assert deliver(other) == 0  # the lease has not run out yet
    clock.advance(31)
    other.housekeeping()
    assert deliver(other) == 1
    assert only_delivery(api)["status"] == "succeeded"
    # The dead worker's late result does not overwrite the new owner's.
    with api.context.db.write() as conn:
        moved = queue.record(
            conn,
            "dead",
            [
                queue.Outcome(
                    delivery_id=job.delivery_id,
                    webhook_id=job.webhook["id"],
                    at=clock.now(),
                    status_code=500,
                    duration_ms=1,
                    error=None,
                    response_body=None,
                    request_headers={},
                    succeeded=False,
                    next_attempt_at=clock.now() + 10,
                )
            ],
            clock.now(),
        )
    assert moved == 0
    assert only_delivery(api)["status"] == "succeeded"


def test_private_target_refused_at_delivery_when_not_allowed(
    api: Api, receiver: Receiver, clock: ManualClock
) -> None:
    api.create_webhook(url=receiver.url("/ok"), events=["*"])
    api.context.settings = api.context.settings.model_copy(update={"allow_private_targets": False})
    worker = make_worker(api, clock)
    api.publish("item.created")
    deliver(worker)
    assert receiver.requests == []
    assert only_delivery(api)["last_error"].startswith("refused: 127.0.0.1 is a loopback address")


def test_name_resolving_to_private_address_refused_at_delivery(
    api: Api, receiver: Receiver, clock: ManualClock
) -> None:
    name = "localhost6" if _resolves("localhost6") else socket.gethostname()
    addresses = {info[4][0] for info in socket.getaddrinfo(name, None)}
    if not addresses:
        pytest.fail("this machine's own name should resolve")
    api.create_webhook(url=f"http://{name}:{receiver.port}/ok", events=["*"])
    api.context.settings = api.context.settings.model_copy(update={"allow_private_targets": False})
    worker = make_worker(api, clock)
    api.publish("item.created")
    deliver(worker)
    assert receiver.requests == []
    assert only_delivery(api)["last_error"].startswith("refused:")


def _resolves(name: str) -> bool:
    try:
        return bool(socket.getaddrinfo(name, None))
    except OSError:
        return False


def test_concurrent_workers_never_claim_the_same_delivery(api: Api, clock: ManualClock) -> None:
    api.create_webhook(url="https://hooks.example.com/x", events=["*"])
    for n in range(60):
        api.publish("item.created", {"n": n})
    import threading

    claimed: dict[str, list[str]] = {}
    barrier = threading.Barrier(4)

    def claim(name: str) -> None:
        barrier.wait()
        got: list[str] = []
        for _ in range(10):
            with api.context.db.write() as conn:
                got += [j.delivery_id for j in queue.claim(conn, name, clock.now(), 30, 7)]
        claimed[name] = got

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    every = [d for ids in claimed.values() for d in ids]
    assert len(every) == 60 and len(set(every)) == 60
    with api.context.db.read() as conn:
        leased = dict(conn.execute(select(deliveries.c.id, deliveries.c.leased_by)).all())
    assert all(leased[d] == name for name, ids in claimed.items() for d in ids)


def test_serve_hands_new_deliveries_to_its_worker_without_a_claim(
    api: Api, receiver: Receiver
) -> None:
    """In `tidings serve`, a publish leases its deliveries to the worker of the same process
    as it writes them; FIFO and rate-limited webhooks still go through the claim."""
    plain = api.create_webhook(url=receiver.url("/ok"), events=["item.created"])
    fifo = api.create_webhook(url=receiver.url("/ok"), events=["item.created"], ordering="fifo")
    ctx = api.context
    with _serve(api) as (worker, client):
        for n in range(20):
            assert _publish(api, client, {"n": n})["deliveries"] == 2
        arrived = receiver.wait_for(40, timeout=20)
    assert len(arrived) == 40
    assert worker.handed_over == 20  # the plain webhook's, not the FIFO one's
    with ctx.db.read() as conn:
        statuses = conn.execute(select(deliveries.c.webhook_id, deliveries.c.status)).all()
        assert {s for _w, s in statuses} == {"succeeded"}
        assert conn.execute(select(webhooks.c.ordering)).scalars().all().count("fifo") == 1
    assert {w for w, _s in statuses} == {plain["id"], fifo["id"]}


@contextlib.contextmanager
def _serve(api: Api, **settings: object) -> Iterator[tuple[Worker, TestClient]]:
    """`tidings serve` in a TestClient, its worker with `settings`, once it is running."""
    ctx = api.context
    ctx.clock = SystemClock()
    worker_settings = ctx.settings.model_copy(update=settings)
    worker = Worker(ctx.db, worker_settings, ctx.box, ctx.clock, poll_interval_s=0.05)
    with TestClient(create_app(ctx, worker)) as client:
        deadline = time.monotonic() + 10
        while worker.taker() is None and time.monotonic() < deadline:  # its loop has started
            time.sleep(0.01)
        yield worker, client


def _publish(api: Api, client: TestClient, content: dict[str, object]) -> dict[str, Any]:
    r = client.post(
        f"/v1/applications/{api.app_id}/events",
        json={"type": "item.created", "content": content},
        headers={"Authorization": f"Bearer {api.operator}"},
    )
    assert r.status_code == 202, r.text
    answer: dict[str, Any] = r.json()
    return answer


def test_serve_delivers_an_older_backlog_while_new_events_keep_coming(
    api: Api, receiver: Receiver
) -> None:
    """New events handed to serve's worker never crowd out its claims: deliveries pending
    from before (a backlog, retries come due) go out while publishing outpaces the receiver."""
    api.create_webhook(url=receiver.url("/slow"), events=["item.created"])  # 50 ms each
    for n in range(30):
        api.publish("item.created", {"backlog": n})  # no worker in this app: all pending
    published = 0
    with _serve(api, worker_concurrency=4) as (_worker, client):  # 2 at a time: 40/s
        deadline = time.monotonic() + 20
        backlog: set[int] = set()
        new = 0
        seen = 0
        while len(backlog) < 30 and time.monotonic() < deadline:
            _publish(api, client, {"new": published})  # faster than they are delivered
            published += 1
            time.sleep(0.005)
            arrived = receiver.requests[seen:]
            seen += len(arrived)
            for request in arrived:
                content = json.loads(request.body)["content"]
                if "backlog" in content:
                    backlog.add(content["backlog"])
                else:
                    new += 1
    assert backlog == set(range(30))
    assert published >= 10 and new < published  # new events kept coming, faster than sent
