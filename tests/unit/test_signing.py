"""Secrets, both signature styles and verify() (tidings.domain.signing).

The Standard Webhooks signature is checked by the outside `standardwebhooks` package, and
the expected hex and base64 digests are computed here with hmac, not with the module under
test, so that a mistake shared by signer and verifier cannot hide.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tidings.domain.signing import (
    DEFAULT_TOLERANCE_S,
    RESERVED_HEADERS,
    SECRET_PREFIX,
    InvalidSignature,
    generate_secret,
    hex_signature,
    mask_secret,
    reserved_header_problem,
    secret_key,
    standard_signature,
    verify,
)

# Fixed secrets so that failures are reproducible; the key bytes are known.
KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))
KEY_C = b"\xff" * 32
SECRET_A = "whsec_" + base64.b64encode(KEY_A).decode()
SECRET_B = "whsec_" + base64.b64encode(KEY_B).decode()
SECRET_C = "whsec_" + base64.b64encode(KEY_C).decode()

NOW = 1_700_000_000
MSG_ID = "dlv_01JD6Z4Q6W0000000000000000"
BODY = b'{"content":{"item_id":42},"timestamp":1700000000,"type":"item.created"}'
ENVELOPE = {"content": {"item_id": 42}, "timestamp": 1700000000, "type": "item.created"}


def _std_sig(key: bytes, msg_id: str, ts: int, body: bytes) -> str:
    digest = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _hex_sig(key: bytes, body: bytes) -> str:
    return "v1=" + hmac.new(key, body, hashlib.sha256).hexdigest().upper()


def _std_headers(
    keys: list[bytes], *, ts: int = NOW, msg_id: str = MSG_ID, body: bytes = BODY
) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": " ".join(_std_sig(k, msg_id, ts, body) for k in keys),
    }


# ---------------------------------------------------------------------------- secrets


def test_generate_secret_is_whsec_and_base64_of_32_bytes() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    body = secret[len("whsec_") :]
    raw = base64.b64decode(body, validate=True)
    assert len(raw) == 32
    assert base64.b64encode(raw).decode() == body  # canonical, padded base64
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", secret)


def test_generate_secret_is_distinct_each_time() -> None:
    secrets = [generate_secret() for _ in range(200)]
    assert len(set(secrets)) == len(secrets)
    assert len({secret_key(s) for s in secrets}) == len(secrets)


def test_generated_secret_round_trips_through_secret_key() -> None:
    secret = generate_secret()
    assert secret_key(secret) == base64.b64decode(secret[6:])
    assert len(secret_key(secret)) == 32


def test_secret_prefix_constant() -> None:
    assert SECRET_PREFIX == "whsec_"


@pytest.mark.parametrize(
    ("secret", "key"),
    [
        pytest.param(SECRET_A, KEY_A, id="32-bytes"),
        pytest.param("whsec_" + base64.b64encode(b"k" * 24).decode(), b"k" * 24, id="24-bytes"),
        pytest.param("whsec_a2V5", b"key", id="short"),
    ],
)
def test_secret_key_decodes_the_base64_part(secret: str, key: bytes) -> None:
    assert secret_key(secret) == key


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param("", id="empty-string"),
        pytest.param("whsec", id="prefix-without-underscore"),
        pytest.param("whsec_", id="prefix-only-empty-key"),
        pytest.param(base64.b64encode(KEY_A).decode(), id="no-prefix"),
        pytest.param("sk_" + base64.b64encode(KEY_A).decode(), id="other-prefix-sk_"),
        pytest.param("WHSEC_" + base64.b64encode(KEY_A).decode(), id="uppercase-prefix"),
        pytest.param(" " + SECRET_A, id="leading-space"),
        pytest.param("whsec_not base64!", id="not-base64"),
        pytest.param("whsec_abc", id="bad-padding"),
        pytest.param("whsec_" + base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode(), id="urlsafe"),
    ],
)
def test_secret_key_rejects(secret: str) -> None:
    with pytest.raises(ValueError):
        secret_key(secret)


def test_mask_secret_shows_prefix_and_last_four_only() -> None:
    secret = generate_secret()
    masked = mask_secret(secret)
    assert masked.startswith("whsec_")
    assert masked.endswith(secret[-4:])
    assert masked != secret
    assert secret[6:-4] not in masked
    assert len(masked) < 16


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        pytest.param(SECRET_A, "whsec_…" + SECRET_A[-4:], id="fixed-secret"),
        pytest.param("whsec_ABCDEFGH", "whsec_…EFGH", id="short-secret"),
    ],
)
def test_mask_secret_exact(secret: str, expected: str) -> None:
    assert mask_secret(secret) == expected


# ----------------------------------------------- Standard Webhooks, checked by the outside library


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(BODY, id="bytes"),
        pytest.param(BODY.decode(), id="str"),
        pytest.param(
            json.dumps({"content": {"name": "Zoë €"}, "timestamp": 1, "type": "x"}),
            id="non-ascii-str",
        ),
        pytest.param(
            json.dumps({"content": {"name": "Zoë €"}, "timestamp": 1, "type": "x"}).encode(),
            id="non-ascii-bytes",
        ),
        pytest.param(
            json.dumps({"content": {"name": "Zoë"}}, ensure_ascii=False).encode(),
            id="raw-utf8-bytes",
        ),
    ],
)
def test_standard_signature_verifies_with_standardwebhooks(body: bytes | str) -> None:
    ts = int(time.time())
    headers = {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(ts),
        "webhook-signature": standard_signature(MSG_ID, ts, body, [SECRET_A]),
    }
    raw = body.encode() if isinstance(body, str) else body
    assert Webhook(SECRET_A).verify(raw, headers) == json.loads(raw)


def test_standard_signature_matches_independent_hmac() -> None:
    assert standard_signature(MSG_ID, NOW, BODY, [SECRET_A]) == _std_sig(KEY_A, MSG_ID, NOW, BODY)


def test_standard_signature_with_two_secrets_each_verifies_alone() -> None:
    ts = int(time.time())
    value = standard_signature(MSG_ID, ts, BODY, [SECRET_A, SECRET_B])
    entries = value.split(" ")
    assert len(entries) == 2
    assert all(e.startswith("v1,") for e in entries)
    assert entries[0] != entries[1]
    headers = {"webhook-id": MSG_ID, "webhook-timestamp": str(ts), "webhook-signature": value}
    assert Webhook(SECRET_A).verify(BODY, headers) == ENVELOPE
    assert Webhook(SECRET_B).verify(BODY, headers) == ENVELOPE
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET_C).verify(BODY, headers)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("webhook-id", "dlv_other", id="other-id"),
        pytest.param("webhook-timestamp", None, id="other-timestamp"),
        pytest.param("body", b'{"content":{},"timestamp":1,"type":"x"}', id="other-body"),
    ],
)
def test_standard_signature_binds_id_timestamp_and_body(field: str, value: object) -> None:
    ts = int(time.time())
    headers = {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(ts),
        "webhook-signature": standard_signature(MSG_ID, ts, BODY, [SECRET_A]),
    }
    body = BODY
    if field == "body":
        assert isinstance(value, bytes)
        body = value
    elif field == "webhook-timestamp":
        headers[field] = str(ts - 1)
    else:
        assert isinstance(value, str)
        headers[field] = value
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET_A).verify(body, headers)


def test_standard_signature_wrong_secret_fails_with_standardwebhooks() -> None:
    ts = int(time.time())
    headers = {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(ts),
        "webhook-signature": standard_signature(MSG_ID, ts, BODY, [SECRET_B]),
    }
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET_A).verify(BODY, headers)


def test_standard_signature_of_no_secrets_is_empty() -> None:
    assert standard_signature(MSG_ID, NOW, BODY, []) == ""


# ------------------------------------------------------------------------------------ hex


def test_hex_signature_one_secret() -> None:
    value = hex_signature(BODY, [SECRET_A])
    assert value == _hex_sig(KEY_A, BODY)
    assert re.fullmatch(r"v1=[0-9A-F]{64}", value)


def test_hex_signature_two_secrets_comma_separated_in_order() -> None:
    value = hex_signature(BODY, [SECRET_A, SECRET_B])
    assert value == f"{_hex_sig(KEY_A, BODY)},{_hex_sig(KEY_B, BODY)}"
    assert " " not in value


def test_hex_signature_str_and_bytes_agree() -> None:
    text = '{"content":{"name":"Zoë"},"timestamp":1,"type":"x"}'
    assert hex_signature(text, [SECRET_A]) == hex_signature(text.encode(), [SECRET_A])
    assert hex_signature(text, [SECRET_A]) == _hex_sig(KEY_A, text.encode())


def test_hex_signature_is_uppercase() -> None:
    digest = hex_signature(BODY, [SECRET_C])[3:]
    assert digest == digest.upper()
    assert digest != digest.lower()  # 64 hex digits are never all decimal in practice


def test_hex_signature_covers_the_body() -> None:
    assert hex_signature(BODY, [SECRET_A]) != hex_signature(BODY + b" ", [SECRET_A])


def test_hex_signature_of_no_secrets_is_empty() -> None:
    assert hex_signature(BODY, []) == ""


# ----------------------------------------------------------------------------------- verify

STD_CASINGS = [
    pytest.param(str.lower, id="lowercase"),
    pytest.param(str.upper, id="UPPERCASE"),
    pytest.param(str.title, id="Title-Case"),
    pytest.param(lambda h: h[:3].upper() + h[3:], id="mIXed-case"),
]


@pytest.mark.parametrize("casing", STD_CASINGS)
def test_verify_accepts_standard_headers_in_any_case(casing: Callable[[str], str]) -> None:
    headers = {casing(k): v for k, v in _std_headers([KEY_A]).items()}
    assert verify(BODY, headers, [SECRET_A], now=NOW) == ENVELOPE


@pytest.mark.parametrize(
    "body", [pytest.param(BODY, id="bytes"), pytest.param(BODY.decode(), id="str")]
)
def test_verify_accepts_bytes_or_str_body(body: bytes | str) -> None:
    assert verify(body, _std_headers([KEY_A]), [SECRET_A], now=NOW) == ENVELOPE


def test_verify_round_trips_tidings_own_signatures() -> None:
    headers = {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(NOW),
        "webhook-signature": standard_signature(MSG_ID, NOW, BODY, [SECRET_A, SECRET_B]),
        "Tidings-Signature": hex_signature(BODY, [SECRET_A, SECRET_B]),
    }
    assert verify(BODY, headers, [SECRET_A], now=NOW) == ENVELOPE
    assert verify(BODY, headers, [SECRET_B], now=NOW) == ENVELOPE


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("Tidings-Signature", id="Tidings-Signature"),
        pytest.param("tidings-signature", id="tidings-signature"),
        pytest.param("TIDINGS-SIGNATURE", id="TIDINGS-SIGNATURE"),
    ],
)
def test_verify_refuses_hex_header_alone_which_could_be_replayed(name: str) -> None:
    with pytest.raises(InvalidSignature, match="required"):
        verify(BODY, {name: _hex_sig(KEY_A, BODY)}, [SECRET_A], now=NOW)


@pytest.mark.parametrize("name", ["Tidings-Signature", "tidings-signature"])
def test_verify_checks_hex_header_beside_standard_headers(name: str) -> None:
    good = {**_std_headers([KEY_A]), name: _hex_sig(KEY_A, BODY)}
    assert verify(BODY, good, [SECRET_A], now=NOW) == ENVELOPE
    bad = {**_std_headers([KEY_A]), name: _hex_sig(KEY_B, BODY)}
    with pytest.raises(InvalidSignature, match="Tidings-Signature"):
        verify(BODY, bad, [SECRET_A], now=NOW)


def test_verify_hex_header_with_a_configured_name() -> None:
    headers = {**_std_headers([KEY_A]), "x-bank-signature": _hex_sig(KEY_B, BODY)}
    with pytest.raises(InvalidSignature):
        verify(BODY, headers, [SECRET_A], now=NOW, hex_header="X-Bank-Signature")
    # Under the default name that header is not looked at.
    assert verify(BODY, headers, [SECRET_A], now=NOW) == ENVELOPE


def test_verify_hex_header_with_several_entries() -> None:
    value = f"{_hex_sig(KEY_C, BODY)}, {_hex_sig(KEY_A, BODY)}"
    headers = {**_std_headers([KEY_A]), "Tidings-Signature": value}
    assert verify(BODY, headers, [SECRET_A], now=NOW) == ENVELOPE


def test_verify_standard_header_with_several_entries() -> None:
    headers = _std_headers([KEY_C, KEY_A])
    assert verify(BODY, headers, [SECRET_A], now=NOW) == ENVELOPE


TAMPERED = [
    pytest.param(BODY + b" ", id="trailing-space"),
    pytest.param(BODY.replace(b"42", b"43"), id="changed-value"),
    pytest.param(b"", id="empty-body"),
    pytest.param(BODY[:-1], id="truncated"),
]


@pytest.mark.parametrize("body", TAMPERED)
def test_verify_rejects_tampered_body_standard(body: bytes) -> None:
    with pytest.raises(InvalidSignature):
        verify(body, _std_headers([KEY_A]), [SECRET_A], now=NOW)


@pytest.mark.parametrize("body", TAMPERED)
def test_verify_rejects_tampered_body_hex(body: bytes) -> None:
    with pytest.raises(InvalidSignature):
        headers = {**_std_headers([KEY_A], body=body), "Tidings-Signature": _hex_sig(KEY_A, BODY)}
        verify(body, headers, [SECRET_A], now=NOW)


def test_verify_rejects_changed_webhook_id() -> None:
    headers = _std_headers([KEY_A])
    headers["webhook-id"] = "dlv_someone_else"
    with pytest.raises(InvalidSignature):
        verify(BODY, headers, [SECRET_A], now=NOW)


def test_verify_rejects_changed_timestamp_within_tolerance() -> None:
    headers = _std_headers([KEY_A])
    headers["webhook-timestamp"] = str(NOW + 1)
    with pytest.raises(InvalidSignature):
        verify(BODY, headers, [SECRET_A], now=NOW)


def test_verify_rejects_wrong_secret_standard() -> None:
    with pytest.raises(InvalidSignature):
        verify(BODY, _std_headers([KEY_B]), [SECRET_A], now=NOW)


def test_verify_rejects_wrong_secret_hex() -> None:
    with pytest.raises(InvalidSignature):
        headers = {**_std_headers([KEY_A]), "Tidings-Signature": _hex_sig(KEY_B, BODY)}
        verify(BODY, headers, [SECRET_A], now=NOW)


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param("", id="empty"),
        pytest.param("v1,", id="v1-comma-only"),
        pytest.param("v1,AAAA", id="garbage-base64"),
        pytest.param("v2," + _std_sig(KEY_A, MSG_ID, NOW, BODY)[3:], id="other-version-v2"),
        pytest.param("v1a," + _std_sig(KEY_A, MSG_ID, NOW, BODY)[3:], id="version-v1a"),
        pytest.param(_std_sig(KEY_A, MSG_ID, NOW, BODY)[3:], id="no-version"),
        pytest.param(
            "v1," + _std_sig(KEY_A, MSG_ID, NOW, BODY)[3:].lower(), id="lowercased-base64"
        ),
    ],
)
def test_verify_rejects_malformed_standard_signature(signature: str) -> None:
    headers = _std_headers([KEY_A])
    headers["webhook-signature"] = signature
    with pytest.raises(InvalidSignature):
        verify(BODY, headers, [SECRET_A], now=NOW)


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param("", id="empty"),
        pytest.param("v1=", id="v1-equals-only"),
        pytest.param("v2=" + _hex_sig(KEY_A, BODY)[3:], id="other-version-v2"),
        pytest.param(_hex_sig(KEY_A, BODY)[3:], id="no-version"),
        pytest.param("v1=" + _hex_sig(KEY_A, BODY)[3:-1], id="one-digit-short"),
    ],
)
def test_verify_rejects_malformed_hex_signature(signature: str) -> None:
    headers = {**_std_headers([KEY_A]), "Tidings-Signature": signature}
    with pytest.raises(InvalidSignature):
        verify(BODY, headers, [SECRET_A], now=NOW)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-headers"),
        pytest.param({"content-type": "application/json"}, id="unrelated-headers-only"),
        pytest.param(
            {k: v for k, v in _std_headers([KEY_A]).items() if k != "webhook-signature"},
            id="missing-webhook-signature",
        ),
        pytest.param(
            {k: v for k, v in _std_headers([KEY_A]).items() if k != "webhook-timestamp"},
            id="missing-webhook-timestamp",
        ),
        pytest.param(
            {k: v for k, v in _std_headers([KEY_A]).items() if k != "webhook-id"},
            id="missing-webhook-id",
        ),
    ],
)
def test_verify_rejects_missing_headers(headers: dict[str, str]) -> None:
    with pytest.raises(InvalidSignature):
        verify(BODY, headers, [SECRET_A], now=NOW)


@pytest.mark.parametrize(
    "offset",
    [
        pytest.param(-301, id="301s-old"),
        pytest.param(301, id="301s-in-the-future"),
        pytest.param(-3600, id="1h-old"),
        pytest.param(3600, id="1h-in-the-future"),
        pytest.param(-86400 * 365, id="1y-old"),
        pytest.param(-NOW, id="epoch-0"),
    ],
)
def test_verify_rejects_timestamp_more_than_5_minutes_away(offset: int) -> None:
    headers = _std_headers([KEY_A], ts=NOW + offset)  # correctly signed, but stale or early
    with pytest.raises(InvalidSignature):
        verify(BODY, headers, [SECRET_A], now=NOW)


@pytest.mark.parametrize(
    "offset",
    [
        pytest.param(0, id="now"),
        pytest.param(-299, id="299s-old"),
        pytest.param(299, id="299s-in-the-future"),
        pytest.param(-300, id="exactly-5min-old"),
        pytest.param(300, id="exactly-5min-in-the-future"),
    ],
)
def test_verify_accepts_timestamp_within_5_minutes(offset: int) -> None:
    headers = _std_headers([KEY_A], ts=NOW + offset)
    assert verify(BODY, headers, [SECRET_A], now=NOW) == ENVELOPE


def test_default_tolerance_is_five_minutes() -> None:
    assert DEFAULT_TOLERANCE_S == 300


def test_verify_custom_tolerance() -> None:
    headers = _std_headers([KEY_A], ts=NOW - 60)
    with pytest.raises(InvalidSignature):
        verify(BODY, headers, [SECRET_A], now=NOW, tolerance_s=30)
    assert verify(BODY, headers, [SECRET_A], now=NOW, tolerance_s=60) == ENVELOPE


@pytest.mark.parametrize(
    "stamp",
    [
        pytest.param("", id="empty"),
        pytest.param("abc", id="letters"),
        pytest.param("1700000000.5", id="decimal-fraction"),
        pytest.param("1.7e9", id="exponent"),
        pytest.param("2023-11-14T22:13:20Z", id="iso-8601"),
        pytest.param("0x6553f100", id="hex"),
    ],
)
def test_verify_rejects_non_numeric_timestamp(stamp: str) -> None:
    headers = _std_headers([KEY_A])
    headers["webhook-timestamp"] = stamp
    with pytest.raises(InvalidSignature):
        verify(BODY, headers, [SECRET_A], now=NOW)


@pytest.mark.parametrize(
    "signed_with",
    [
        pytest.param([KEY_A], id="new-secret-only"),
        pytest.param([KEY_B], id="previous-secret-only"),
        pytest.param([KEY_A, KEY_B], id="both-secrets"),
        pytest.param([KEY_B, KEY_A], id="both-secrets-reversed"),
    ],
)
def test_verify_accepts_either_of_two_secrets_during_rotation(signed_with: list[bytes]) -> None:
    secrets = [SECRET_A, SECRET_B]
    assert verify(BODY, _std_headers(signed_with), secrets, now=NOW) == ENVELOPE
    hex_value = ",".join(_hex_sig(k, BODY) for k in signed_with)
    headers = {**_std_headers(signed_with), "Tidings-Signature": hex_value}
    assert verify(BODY, headers, secrets, now=NOW) == ENVELOPE


def test_verify_rejects_a_third_secret_during_rotation() -> None:
    with pytest.raises(InvalidSignature):
        verify(BODY, _std_headers([KEY_C]), [SECRET_A, SECRET_B], now=NOW)
    with pytest.raises(InvalidSignature):
        headers = {**_std_headers([KEY_A]), "Tidings-Signature": _hex_sig(KEY_C, BODY)}
        verify(BODY, headers, [SECRET_A, SECRET_B], now=NOW)


def test_verify_with_no_secrets_rejects() -> None:
    with pytest.raises(InvalidSignature):
        verify(BODY, _std_headers([KEY_A]), [], now=NOW)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"not json", id="plain-text"),
        pytest.param(b"<xml/>", id="xml"),
        pytest.param(b'{"content": ', id="truncated-json"),
        pytest.param(b"\xff\xfe\x00", id="invalid-utf8"),
    ],
)
def test_verify_rejects_correctly_signed_non_json_body(body: bytes) -> None:
    with pytest.raises(InvalidSignature):
        verify(body, _std_headers([KEY_A], body=body), [SECRET_A], now=NOW)
    with pytest.raises(InvalidSignature):
        verify(body, {"Tidings-Signature": _hex_sig(KEY_A, body)}, [SECRET_A], now=NOW)


def test_invalid_signature_is_an_exception() -> None:
    assert issubclass(InvalidSignature, Exception)


# ---------------------------------------------------------------- reserved_header_problem


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("webhook-id", id="webhook-id"),
        pytest.param("Webhook-Timestamp", id="Webhook-Timestamp"),
        pytest.param("WEBHOOK-SIGNATURE", id="WEBHOOK-SIGNATURE"),
        pytest.param("Content-Type", id="Content-Type"),
        pytest.param("content-length", id="content-length"),
        pytest.param("Content-Encoding", id="Content-Encoding"),
        pytest.param("Transfer-Encoding", id="Transfer-Encoding"),
        pytest.param("User-Agent", id="User-Agent"),
        pytest.param("Host", id="Host"),
        pytest.param("connection", id="connection"),
        pytest.param("Tidings-Signature", id="default-signature-header"),
        pytest.param("tidings-signature", id="default-signature-header-lowercase"),
    ],
)
def test_reserved_header_problem_refuses(name: str) -> None:
    problem = reserved_header_problem(name, "Tidings-Signature")
    assert problem is not None
    assert name in problem


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("X-Bank-Signature", id="configured-name"),
        pytest.param("x-bank-signature", id="configured-name-lowercase"),
    ],
)
def test_reserved_header_problem_refuses_configured_signature_header(name: str) -> None:
    assert reserved_header_problem(name, "X-Bank-Signature") is not None


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("Authorization", id="Authorization"),
        pytest.param("X-Api-Key", id="X-Api-Key"),
        pytest.param("X-Tenant", id="X-Tenant"),
        pytest.param("webhook-idx", id="webhook-idx-not-exact"),
        pytest.param("Tidings-Signature-Extra", id="signature-prefix-not-exact"),
    ],
)
def test_reserved_header_problem_allows_custom_headers(name: str) -> None:
    assert reserved_header_problem(name, "Tidings-Signature") is None


def test_reserved_headers_cover_the_signature_and_content_headers() -> None:
    assert {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "content-type",
        "user-agent",
    } <= RESERVED_HEADERS
    assert all(h == h.lower() for h in RESERVED_HEADERS)


def test_binascii_error_is_not_leaked_from_secret_key() -> None:
    with pytest.raises(ValueError) as info:
        secret_key("whsec_@@@@")
    # binascii.Error subclasses ValueError; the message must be our own.
    assert not isinstance(info.value, binascii.Error)


def test_verify_rejects_signed_json_that_is_not_an_object() -> None:
    body = b"[1, 2]"
    with pytest.raises(InvalidSignature, match="object"):
        verify(body, _std_headers([KEY_A], body=body), [SECRET_A], now=NOW)


def test_public_verify_uses_the_current_time_and_standardwebhooks_signatures() -> None:
    import time

    from standardwebhooks.webhooks import Webhook

    from tidings.verify import InvalidSignature as PublicInvalidSignature
    from tidings.verify import verify as public_verify

    now = int(time.time())
    signature = Webhook(SECRET_A).sign(MSG_ID, datetime.fromtimestamp(now, UTC), BODY.decode())
    headers = {"Webhook-Id": MSG_ID, "Webhook-Timestamp": str(now), "Webhook-Signature": signature}
    assert public_verify(BODY, headers, [SECRET_B, SECRET_A]) == ENVELOPE
    assert public_verify(BODY.decode(), headers, SECRET_A) == ENVELOPE  # type: ignore[arg-type]
    with pytest.raises(PublicInvalidSignature):
        public_verify(BODY, headers, [SECRET_B])
    with pytest.raises(PublicInvalidSignature):
        public_verify(BODY, headers, ["not-a-secret"])
    old = {**headers, "Webhook-Timestamp": str(now - 400)}
    with pytest.raises(PublicInvalidSignature):
        public_verify(BODY, old, [SECRET_A])
