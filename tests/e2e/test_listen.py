"""`tidings listen`: verifies and prints deliveries, answers with the chosen status."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import httpx2 as httpx
import pytest

from tests.e2e.helpers import Workspace, free_port
from tidings.domain.signing import delivery_headers, generate_secret

BODY = b'{"content":{"item_id":42},"timestamp":1,"type":"item.created"}'


def signed(secret: str, body: bytes = BODY) -> dict[str, str]:
    return delivery_headers(
        delivery_id="dlv_test",
        timestamp=int(time.time()),
        body=body,
        secrets=[secret],
        signature_header="Tidings-Signature",
        user_agent="test",
    )


@pytest.fixture
def listen(workspace: Workspace) -> Iterator:
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> tuple[str, subprocess.Popen[str]]:
        port = free_port()
        proc = subprocess.Popen(
            ["tidings", "listen", "--port", str(port), *args],
            cwd=workspace.root,
            env=workspace.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                httpx.get(base, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        return base, proc

    yield start
    for proc in procs:
        proc.terminate()
        proc.communicate(timeout=10)


def test_listen_verifies_and_prints(listen) -> None:
    secret = generate_secret()
    base, proc = listen("--secret", secret)
    good = httpx.post(base + "/hook", content=BODY, headers=signed(secret), timeout=5)
    assert good.status_code == 200
    bad = httpx.post(base + "/hook", content=BODY, headers=signed(generate_secret()), timeout=5)
    assert bad.status_code == 401
    proc.terminate()
    out, err = proc.communicate(timeout=10)
    assert "Listening on" in err
    assert "── item.created  dlv_test" in out
    assert "signature   verified" in out
    assert "NOT VERIFIED" in out
    assert '"item_id": 42' in out


def test_listen_answers_with_the_chosen_status(listen) -> None:
    secret = generate_secret()
    base, _proc = listen("--secret", secret, "--status", "503")
    assert httpx.post(base, content=BODY, headers=signed(secret), timeout=5).status_code == 503


def test_listen_refuses_a_malformed_secret(workspace: Workspace) -> None:
    result = workspace.run("listen", "--secret", "nope")
    assert result.returncode != 0
    assert "whsec_" in result.stderr and "Traceback" not in result.stderr


def test_listen_forwards_to_a_local_handler_and_answers_with_its_status(listen) -> None:
    from tests.support.receiver import Receiver

    handler = Receiver().start()
    try:
        secret = generate_secret()
        base, proc = listen("--secret", secret, "--forward", handler.url("/fail"))
        response = httpx.post(base + "/hook", content=BODY, headers=signed(secret), timeout=5)
        assert response.status_code == 500  # what the local handler answered
        (forwarded,) = handler.wait_for(1)
        assert forwarded.body == BODY
        assert forwarded.headers["webhook-id"] == "dlv_test"  # signatures pass through intact
        proc.terminate()
        out, _err = proc.communicate(timeout=10)
        assert f"forwarded   {handler.url('/fail')} → 500" in out
    finally:
        handler.stop()
