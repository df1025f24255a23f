"""Schemathesis against the API's own OpenAPI document, in process, on SQLite.

Every operation of `/openapi.json` gets generated requests, valid and invalid, sent to the ASGI
app; each answer is checked: never a 5xx, always a documented status code, content type,
headers and body (errors are application/problem+json, and the document says so), and
schema-invalid input is refused.

So that the generated requests get past "401" and "404 no such object" into the handlers,
an application, an admin API key, webhooks and a delivery exist beforehand, and hooks swap
part of the generated values for real ones: path ids, the credential (the operator token or
the admin key), and a few body fields that the schema cannot describe (a callback URL that
passes the address policy, event types from the catalog). A field is swapped only when the
generated value is already schema-valid, so an invalid request stays invalid.

A stateful test then chains calls (create an application, then a webhook in it, then test
it, then read and retry the delivery...) along the links schemathesis infers between the
operations, with the same checks. Each workflow starts from the seeded database.

Bounded and deterministic: a fixed seed, derandomized, MAX_EXAMPLES generated requests per
operation (plus schemathesis' own coverage cases) and STATEFUL_RUNS short workflows. Set
TIDINGS_FUZZ_EXAMPLES to fuzz longer locally.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

from tests.integration.conftest import OPERATOR, make_settings
from tidings.api import webhook_rules
from tidings.api.app import build_context, create_app
from tidings.clock import ManualClock
from tidings.domain import targets
from tidings.store.db import Database
from tidings.store.tables import catalog_version, metadata

MAX_EXAMPLES = int(os.environ.get("TIDINGS_FUZZ_EXAMPLES", "25"))
STATEFUL_RUNS = 20
SEED = 20261126

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
        "generation": {"deterministic": True, "max-examples": MAX_EXAMPLES, "database": "none"},
        "phases": {
            "stateful": {
                "max-steps": 10,
                "inference": {"algorithms": ["location-headers", "dependency-analysis"]},
            }
        },
        "checks": {
            # Every check but `positive_data_acceptance`: the document cannot say everything a
            # handler checks (an event type must be in the catalog, a callback URL must not
            # point at a private network), so a schema-valid request may rightly get 422.
            # Nor `ignored_auth`: the hooks below put a valid token on every request, the check's
            # deliberately wrong one included, so it would only see its own token replaced. The
            # role matrix in tests/integration/test_roles.py sends missing and wrong tokens.
            "enabled": True,
            "positive_data_acceptance": {"enabled": False},
            "ignored_auth": {"enabled": False},
        },
    }
)

CALLBACK_URLS = ["https://hooks.example.com/fuzz", "http://127.0.0.1:9000/hook"]
EVENT_LISTS = [["*"], ["item.created", "payment.link.updated"], ["TEST_EVENT"]]
EVENT_TYPES = ["item.created", "webhook.disabled", "TEST_EVENT"]


@dataclass(frozen=True)
class Seeded:
    """Real objects for the generated requests to find."""

    app_id: str
    admin_key: str
    webhook_id: str  # read, changed, rotated, tested, recovered: never deleted
    doomed_webhook_id: str  # the one DELETE may remove
    delivery_id: str  # failed, so that a retry can be accepted


def _seed(app: FastAPI) -> Seeded:
    # No `with`: the app's lifespan is schemathesis' to run.
    client = TestClient(app)
    operator = {"Authorization": f"Bearer {OPERATOR}"}

    def call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = client.request(method, path, json=body, headers=operator)
        assert response.status_code < 300, response.text
        return response.json()

    app_id = call("POST", "/v1/applications", {"name": "Fuzz"})["id"]
    key = call("POST", f"/v1/applications/{app_id}/api-keys", {"name": "fuzz", "role": "admin"})
    hooks = f"/v1/applications/{app_id}/webhooks"
    keeper = call("POST", hooks, {"url": "https://hooks.example.com/in", "events": ["*"]})
    doomed = call("POST", hooks, {"url": "https://hooks.example.com/gone", "events": ["*"]})
    # A third webhook, out of the fuzzer's reach, whose delivery fails when it is disabled.
    spare = call("POST", hooks, {"url": "https://hooks.example.com/spare", "events": ["*"]})
    call("POST", f"/v1/applications/{app_id}/events", {"type": "item.created", "content": {}})
    for enabled in (False, True):
        call("PATCH", f"{hooks}/{spare['id']}", {"enabled": enabled})
    failed = call("GET", f"/v1/applications/{app_id}/deliveries?webhook_id={spare['id']}")
    assert [d["status"] for d in failed["data"]] == ["failed"]
    return Seeded(app_id, key["key"], keeper["id"], doomed["id"], failed["data"][0]["id"])


def _public_address(_host: str) -> list[targets.IPAddress]:
    return [ipaddress.ip_address("93.184.215.14")]


@pytest.fixture(scope="module")
def fuzz_app(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[FastAPI, Seeded]]:
    path = tmp_path_factory.mktemp("fuzz") / "tidings.db"
    shutil.copy(sqlite_template, path)
    context = build_context(make_settings(f"sqlite:///{path}"), clock=ManualClock())
    app = create_app(context)
    with pytest.MonkeyPatch.context() as patch:
        # Hermetic: every callback host name "resolves" to a public address, without DNS.
        patch.setattr(webhook_rules, "_resolve", _public_address)
        seeded = _seed(app)
        snapshot = path.with_name("seeded.db")
        _sql(context.db, f"VACUUM INTO '{snapshot}'")
        app.state.restore_seeded = lambda: _restore(context.db, snapshot)
        yield app, seeded
    context.db.dispose()


def _sql(db: Database, *statements: str) -> None:
    """Statements on a connection of `db` outside any transaction (as ATTACH needs)."""
    raw = db.engine.raw_connection()
    try:
        for statement in statements:
            raw.driver_connection.execute(statement)
    finally:
        raw.close()


def _restore(db: Database, snapshot: Path) -> None:
    """Every table back to the seeded `snapshot`, in one transaction; `catalog_version` moves
    on instead (past any version the app has seen), so that what the app keeps of the
    catalog is read again."""
    copies = [t.name for t in metadata.sorted_tables if t.name != catalog_version.name]
    _sql(
        db,
        f"ATTACH DATABASE '{snapshot}' AS seeded",
        "BEGIN IMMEDIATE",
        "PRAGMA defer_foreign_keys = ON",
        *(f"DELETE FROM main.{name}" for name in reversed(copies)),
        *(f"INSERT INTO main.{name} SELECT * FROM seeded.{name}" for name in copies),
        "UPDATE catalog_version SET version = version + 1",
        "COMMIT",
        "DETACH DATABASE seeded",
    )


def _is_text(value: object, low: int, high: int) -> bool:
    return isinstance(value, str) and low <= len(value) <= high


def _is_event_list(value: object) -> bool:
    return isinstance(value, list) and len(value) <= 100 and all(_is_text(v, 1, 100) for v in value)


def _choices(body: dict[str, Any], field: str, valid: bool, values: list[Any]) -> Any:
    """The generated body, or one with `field` set to one of `values` (when it was valid)."""
    if field not in body or not valid:
        return st.just(body)
    return st.sampled_from([body, *({**body, field: v} for v in values)])


def _with_real_values(seeded: Seeded) -> dict[str, Any]:
    """The hooks that swap generated values for real ones, by name."""

    def flatmap_path_parameters(context: Any, parameters: dict[str, Any] | None) -> Any:
        if not parameters:
            return st.just(parameters)
        real = dict(parameters)
        if "app_id" in real:
            real["app_id"] = seeded.app_id
        if "webhook_id" in real:
            deleting = context.operation.method.upper() == "DELETE"
            real["webhook_id"] = seeded.doomed_webhook_id if deleting else seeded.webhook_id
        if "delivery_id" in real:
            real["delivery_id"] = seeded.delivery_id
        return st.sampled_from([parameters, real])

    def flatmap_headers(_context: Any, headers: dict[str, Any] | None) -> Any:
        tokens = st.sampled_from([OPERATOR, seeded.admin_key])
        return tokens.map(lambda t: {**(headers or {}), "Authorization": f"Bearer {t}"})

    def flatmap_body(context: Any, body: Any) -> Any:
        if not isinstance(body, dict):
            return st.just(body)
        path, method = context.operation.path, context.operation.method.upper()
        if path.endswith("/webhooks") or (path.endswith("{webhook_id}") and method == "PATCH"):
            url_valid = _is_text(body.get("url"), 1, 2048)
            events_valid = _is_event_list(body.get("events"))
            return _choices(body, "url", url_valid, CALLBACK_URLS).flatmap(
                lambda b: _choices(b, "events", events_valid, EVENT_LISTS)
            )
        if path.endswith("/events"):
            return _choices(body, "type", _is_text(body.get("type"), 1, 100), EVENT_TYPES)
        if path.endswith("/users"):
            valid = _is_text(body.get("email"), 0, 320)
            return _choices(body, "email", valid, ["fuzz@example.com", "other@example.com"])
        return st.just(body)

    return {
        "flatmap_path_parameters": flatmap_path_parameters,
        "flatmap_headers": flatmap_headers,
        "flatmap_body": flatmap_body,
    }


@pytest.fixture(scope="module")
def api_schema(fuzz_app: tuple[FastAPI, Seeded]) -> Any:
    app, seeded = fuzz_app
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)
    for name, hook in _with_real_values(seeded).items():
        schema.hooks.register_hook_with_name(hook, name)
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


def _credential(case: schemathesis.Case) -> dict[str, str] | None:
    """The operator token, for the cases no hook saw (the coverage phase does not run them)."""
    if any(name.lower() == "authorization" for name in case.headers or {}):
        return None
    return {"Authorization": f"Bearer {OPERATOR}"}


@schema.parametrize()
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=_credential(case))


def test_api_workflows_conform_to_its_openapi_document(
    api_schema: Any, fuzz_app: tuple[FastAPI, Seeded]
) -> None:
    """Sequences of calls, each answer's ids feeding the next request."""

    app = fuzz_app[0]

    class Workflows(api_schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            # Each workflow starts from the seeded database. Carried over from the workflows
            # before it (and from the test above), what the API answers depended on the
            # order they ran in (the 10-webhook limit, for one): the same draws then took
            # other rules, and Hypothesis stopped with `FlakyStrategyDefinition` ("data
            # generation depending on external state"), depending only on how the code
            # happened to be laid out.
            app.state.restore_seeded()

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            # The operator for every step: the hooks' admin key of the seeded application
            # rightly gets 404 for the applications a workflow creates.
            return {"headers": {"Authorization": f"Bearer {OPERATOR}"}}

    run_state_machine_as_test(
        Workflows,
        settings=settings(
            max_examples=STATEFUL_RUNS,
            stateful_step_count=10,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
