"""Security rules over the API: address policy spellings, bounds, cookies over https, secrets."""

from __future__ import annotations

import re

import pytest

from tests.integration.conftest import Api

REFUSED_TARGETS = [
    pytest.param("http://[::1]:8080/hook", id="ipv6-loopback"),
    pytest.param("http://[::ffff:127.0.0.1]/hook", id="ipv4-mapped-loopback"),
    pytest.param("http://[::ffff:10.1.2.3]/hook", id="ipv4-mapped-private"),
    pytest.param("http://0x7f000001/hook", id="hex-loopback"),
    pytest.param("http://0177.0.0.1/hook", id="octal-loopback"),
    pytest.param("http://127.1/hook", id="short-loopback"),
    pytest.param("http://2130706433/hook", id="decimal-loopback"),
    pytest.param("http://100.64.0.1/hook", id="carrier-grade-nat"),
    pytest.param("http://192.168.1.10/hook", id="rfc1918-192-168"),
    pytest.param("http://172.16.5.4/hook", id="rfc1918-172-16"),
    pytest.param("http://[fe80::1]/hook", id="ipv6-link-local"),
    pytest.param("http://[fc00::1]/hook", id="ipv6-unique-local"),
    pytest.param("http://224.0.0.1/hook", id="multicast"),
    pytest.param("http://0.0.0.0/hook", id="unspecified"),
    pytest.param("http://169.254.169.254/latest/meta-data", id="aws-metadata"),
    pytest.param("http://[fd00:ec2::254]/latest", id="aws-metadata-ipv6"),
    pytest.param("http://100.100.100.200/", id="alibaba-metadata"),
    pytest.param("http://foo.localhost/hook", id="localhost-subdomain"),
    pytest.param("http://LOCALHOST./hook", id="localhost-uppercase-trailing-dot"),
    pytest.param("http://vm/hook", id="name-resolving-to-loopback"),
    pytest.param("file:///etc/passwd", id="file-scheme"),
    pytest.param("gopher://h.example.com/", id="gopher-scheme"),
    pytest.param("https://u:p@h.example.com/", id="credentials-in-url"),
    pytest.param("https://h.example.com:0/", id="port-zero"),
    pytest.param("https://h.example.com/#frag", id="fragment"),
]


@pytest.mark.parametrize("url", REFUSED_TARGETS)
def test_refused_callback_url_at_creation(api: Api, url: str) -> None:
    if url.startswith("http://vm/"):
        import socket

        if socket.gethostname() != "vm":
            url = f"http://{socket.gethostname()}/hook"
    response = api.call("POST", api.webhooks(), api.admin, json={"url": url, "events": ["*"]})
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("url: ")
    assert api.call("GET", api.webhooks(), api.admin).json()["data"] == []


@pytest.mark.parametrize("url", REFUSED_TARGETS[:5])
def test_refused_callback_url_on_update_changes_nothing(api: Api, url: str) -> None:
    hook = api.create_webhook()
    path = f"{api.webhooks()}/{hook['id']}"
    assert api.call("PATCH", path, api.admin, json={"url": url}).status_code == 422
    assert api.call("GET", path, api.admin).json()["url"] == hook["url"]


def test_plain_http_refused_when_https_required_and_https_accepted(api: Api) -> None:
    api.context.settings = api.context.settings.model_copy(update={"require_https": True})
    bad = api.call(
        "POST", api.webhooks(), api.admin, json={"url": "http://h.example.com", "events": ["*"]}
    )
    assert bad.status_code == 422 and "https" in bad.json()["detail"]
    assert api.create_webhook(url="https://h.example.com")["url"] == "https://h.example.com"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"events": ["item.created"] * 101}, id="events-list-over-100"),
        pytest.param({"headers": {f"X-H{n}": "v" for n in range(21)}}, id="headers-over-20"),
        pytest.param({"headers": {"X-Long": "v" * 1001}}, id="header-value-over-1000"),
        pytest.param({"name": "n" * 201}, id="name-over-200"),
        pytest.param({"url": "https://h.example.com/" + "p" * 2040}, id="url-over-2048"),
        pytest.param({"timeout_s": 0.5}, id="timeout-under-1s"),
        pytest.param({"timeout_s": 31}, id="timeout-over-30s"),
    ],
)
def test_bounds_on_webhook_fields(api: Api, body: dict) -> None:
    full = {"url": "https://h.example.com", "events": ["*"], **body}
    assert api.call("POST", api.webhooks(), api.admin, json=full).status_code == 422


def test_event_content_over_the_body_limit_is_413(api: Api) -> None:
    response = api.publish("item.created", {"blob": "x" * 1_000_001})
    assert response.status_code == 413


def test_secret_never_comes_back_in_full(api: Api) -> None:
    hook = api.create_webhook()
    for path in (api.webhooks(), f"{api.webhooks()}/{hook['id']}"):
        assert hook["secret"] not in api.call("GET", path, api.admin).text
    patched = api.call("PATCH", f"{api.webhooks()}/{hook['id']}", api.admin, json={"name": "n"})
    assert hook["secret"] not in patched.text


def test_errors_do_not_echo_credentials(api: Api) -> None:
    response = api.call("GET", api.webhooks(), "tdk_not-a-real-key-but-secret-looking")
    assert response.status_code == 401
    assert "tdk_not-a-real-key" not in response.text


def test_session_cookie_is_secure_over_https(api: Api) -> None:
    from fastapi.testclient import TestClient

    api.call(
        "POST",
        f"/v1/applications/{api.app_id}/users",
        api.operator,
        json={"email": "sec@acme.example", "password": "long enough pw", "role": "admin"},
    )
    with TestClient(api.client.app, base_url="https://tidings.example") as client:
        form = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        assert "Secure" in form.headers["set-cookie"]
        r = client.post(
            "/login",
            data={"email": "sec@acme.example", "password": "long enough pw", "csrf_token": token},
            follow_redirects=False,
        )
        assert r.status_code == 303
        assert "Secure" in r.headers["set-cookie"] and "HttpOnly" in r.headers["set-cookie"]


def test_per_webhook_timeout_is_accepted_within_bounds(api: Api) -> None:
    hook = api.create_webhook(timeout_s=5)
    assert hook["timeout_s"] == 5.0
    path = f"{api.webhooks()}/{hook['id']}"
    assert api.call("PATCH", path, api.admin, json={"timeout_s": None}).json()["timeout_s"] is None


def test_openapi_says_the_api_takes_a_bearer_token(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert spec["paths"]["/v1/applications"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in spec["paths"]["/healthz"]["get"]
