"""Event types, subscriptions, the envelope and the test event (tidings.domain.catalog).

The module is imported whole: its `test_event_content` would otherwise be collected as a test.
"""

from __future__ import annotations

import json
import uuid

import pytest

from tidings.domain import catalog

KNOWN = catalog.DEFAULT_EVENT_TYPES

# DESIGN §2, verbatim.
DESIGN_TYPES = {
    "user.deleted",
    "item.created",
    "item.refreshed",
    "item.deleted",
    "item.account.created",
    "item.account.updated",
    "item.account.deleted",
    "payment.transaction.created",
    "payment.transaction.updated",
    "payment.link.updated",
    "webhook.disabled",
}


# ------------------------------------------------------------------------------ the catalog


def test_default_catalog_is_exactly_the_eleven_design_types() -> None:
    assert len(DESIGN_TYPES) == 11
    assert set(KNOWN) == DESIGN_TYPES
    assert len(KNOWN) == 11


def test_default_catalog_does_not_contain_reserved_names() -> None:
    assert catalog.TEST_EVENT not in KNOWN
    assert catalog.WILDCARD not in KNOWN


@pytest.mark.parametrize("name", sorted(DESIGN_TYPES))
def test_every_default_type_has_a_description_and_a_valid_name(name: str) -> None:
    assert isinstance(KNOWN[name], str)
    assert KNOWN[name].strip()
    assert catalog.is_valid_type_name(name)


def test_constants() -> None:
    assert catalog.TEST_EVENT == "TEST_EVENT"
    assert catalog.WILDCARD == "*"
    assert catalog.WEBHOOK_DISABLED == "webhook.disabled"


# ---------------------------------------------------------------------- subscription_problem


@pytest.mark.parametrize(
    ("events", "word"),
    [
        pytest.param([], "at least one", id="empty-list"),
        pytest.param(["*", "item.created"], '"*"', id="wildcard-then-type"),
        pytest.param(["item.created", "*"], '"*"', id="type-then-wildcard"),
        pytest.param(["*", "*"], '"*"', id="wildcard-twice"),
        pytest.param(["*", "TEST_EVENT"], '"*"', id="wildcard-with-TEST_EVENT"),
        pytest.param(["TEST_EVENT"], "TEST_EVENT", id="TEST_EVENT-alone"),
        pytest.param(["item.created", "TEST_EVENT"], "TEST_EVENT", id="TEST_EVENT-with-type"),
        pytest.param(["no.such.type"], "no.such.type", id="unknown-type"),
        pytest.param(["item.created", "bogus"], "bogus", id="known-and-unknown"),
        pytest.param(["Item.Created"], "Item.Created", id="wrong-case-Item.Created"),
        pytest.param(["item.created "], "unknown", id="trailing-space"),
        pytest.param([""], "unknown", id="empty-string-type"),
        pytest.param(["item"], "item", id="prefix-of-a-type"),
        pytest.param(["item.*"], "item.*", id="glob-pattern"),
        pytest.param(["item.created", "item.created"], "more than once", id="duplicate"),
        pytest.param(
            ["user.deleted", "item.created", "user.deleted"],
            "more than once",
            id="duplicate-not-adjacent",
        ),
    ],
)
def test_subscription_problem_refuses(events: list[str], word: str) -> None:
    problem = catalog.subscription_problem(events, KNOWN)
    assert problem is not None
    assert word in problem


@pytest.mark.parametrize(
    "events",
    [
        pytest.param(["*"], id="wildcard-alone"),
        pytest.param(["item.created"], id="one-type"),
        pytest.param(["webhook.disabled"], id="operational-type"),
        pytest.param(["item.created", "item.deleted", "user.deleted"], id="three-types"),
        pytest.param(sorted(DESIGN_TYPES), id="every-type"),
    ],
)
def test_subscription_problem_accepts(events: list[str]) -> None:
    assert catalog.subscription_problem(events, KNOWN) is None


def test_subscription_problem_knows_operator_added_types() -> None:
    known = [*KNOWN, "loan.approved"]
    assert catalog.subscription_problem(["loan.approved"], known) is None
    assert catalog.subscription_problem(["loan.approved"], KNOWN) is not None


@pytest.mark.parametrize(
    "events",
    [
        pytest.param(["TEST_EVENT"], id="TEST_EVENT-alone"),
        pytest.param(["item.created", "TEST_EVENT"], id="TEST_EVENT-with-type"),
    ],
)
def test_test_event_is_refused_even_if_a_catalog_lists_it(events: list[str]) -> None:
    problem = catalog.subscription_problem(events, [*KNOWN, catalog.TEST_EVENT])
    assert problem is not None
    assert "TEST_EVENT" in problem


def test_subscription_problem_accepts_any_iterable_of_known_types() -> None:
    known_once = iter(KNOWN)  # a one-shot iterator
    assert catalog.subscription_problem(["item.created"], known_once) is None


def test_subscription_problem_lists_each_unknown_type_once() -> None:
    problem = catalog.subscription_problem(["zz", "aa", "zz"], KNOWN)
    assert problem is not None
    assert problem.count("zz") == 1
    assert problem.index("aa") < problem.index("zz")


# ---------------------------------------------------------------------------------- subscribes


@pytest.mark.parametrize(
    ("events", "event_type", "expected"),
    [
        pytest.param(["*"], "item.created", True, id="wildcard-gets-item.created"),
        pytest.param(["*"], "webhook.disabled", True, id="wildcard-gets-webhook.disabled"),
        pytest.param(["*"], "loan.approved", True, id="wildcard-gets-operator-type"),
        pytest.param(["item.created"], "item.created", True, id="exact-match"),
        pytest.param(["user.deleted", "item.created"], "item.created", True, id="second-of-two"),
        pytest.param(["item.created"], "item.deleted", False, id="other-type"),
        pytest.param(["item"], "item.created", False, id="no-prefix-match"),
        pytest.param(["item.created"], "item", False, id="no-reverse-prefix-match"),
        pytest.param(["item.created"], "Item.Created", False, id="case-sensitive"),
        pytest.param([], "item.created", False, id="no-subscriptions"),
        pytest.param(["*"], "TEST_EVENT", False, id="wildcard-never-gets-TEST_EVENT"),
        pytest.param(["TEST_EVENT"], "TEST_EVENT", False, id="TEST_EVENT-never-by-name"),
        pytest.param(sorted(DESIGN_TYPES), "TEST_EVENT", False, id="all-types-no-TEST_EVENT"),
    ],
)
def test_subscribes(events: list[str], event_type: str, expected: bool) -> None:
    assert catalog.subscribes(events, event_type) is expected


def test_subscribes_accepts_a_tuple() -> None:
    assert catalog.subscribes(("item.created",), "item.created") is True


# ------------------------------------------------------------------------------------ envelope


@pytest.mark.parametrize(
    ("event_type", "content", "timestamp"),
    [
        pytest.param("item.created", {"item_id": 1}, 1_700_000_000, id="simple"),
        pytest.param("user.deleted", {}, 0, id="empty-content"),
        pytest.param(
            "payment.transaction.updated",
            {"nested": {"a": [1, 2]}, "type": "inner", "timestamp": "inner"},
            1_700_000_123,
            id="content-with-clashing-keys",
        ),
    ],
)
def test_envelope_has_exactly_content_timestamp_type(
    event_type: str, content: dict[str, object], timestamp: int
) -> None:
    body = catalog.envelope(event_type, content, timestamp)
    assert set(body) == {"content", "timestamp", "type"}
    assert body == {"content": content, "timestamp": timestamp, "type": event_type}
    assert isinstance(body["timestamp"], int)
    assert json.loads(json.dumps(body)) == body


def test_envelope_copies_the_content() -> None:
    content = {"a": 1}
    body = catalog.envelope("item.created", content, 1)
    content["b"] = 2
    assert body["content"] == {"a": 1}


def test_envelope_serialises_in_design_key_order() -> None:
    body = catalog.envelope("item.created", {"x": 1}, 5)
    assert list(json.loads(json.dumps(body))) == ["content", "timestamp", "type"]


# ---------------------------------------------------------------------------------- test event


def test_test_event_content_matches_design() -> None:
    content = catalog.test_event_content()
    assert set(content) == {"item_id", "status", "user_uuid"}
    assert content["item_id"] == 1234567890
    assert content["status"] == 0
    assert isinstance(content["user_uuid"], str)
    assert str(uuid.UUID(content["user_uuid"])) == content["user_uuid"]


def test_test_event_content_uses_a_given_uuid() -> None:
    given = uuid.UUID("123e4567-e89b-12d3-a456-426614174000")
    assert catalog.test_event_content(given) == {
        "item_id": 1234567890,
        "status": 0,
        "user_uuid": "123e4567-e89b-12d3-a456-426614174000",
    }


def test_test_event_content_uuid_is_fresh_each_time() -> None:
    uuids = {catalog.test_event_content()["user_uuid"] for _ in range(50)}
    assert len(uuids) == 50


def test_test_event_envelope() -> None:
    body = catalog.envelope(catalog.TEST_EVENT, catalog.test_event_content(), 1_700_000_000)
    assert body["type"] == "TEST_EVENT"
    assert body["content"]["item_id"] == 1234567890


# --------------------------------------------------------------------------- is_valid_type_name


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("user.deleted", id="user.deleted"),
        pytest.param("a", id="one-letter"),
        pytest.param("loan", id="one-word"),
        pytest.param("item.account.created", id="three-words"),
        pytest.param("loan_offer.approved_v2", id="underscores-and-digits"),
        pytest.param("a" * 100, id="100-chars"),
    ],
)
def test_is_valid_type_name_accepts(name: str) -> None:
    assert catalog.is_valid_type_name(name) is True


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("TEST_EVENT", id="TEST_EVENT-uppercase"),
        pytest.param("Item.created", id="capital-letter"),
        pytest.param("*", id="wildcard"),
        pytest.param("item.*", id="glob"),
        pytest.param(".item", id="leading-dot"),
        pytest.param("item.", id="trailing-dot"),
        pytest.param("item..created", id="double-dot"),
        pytest.param("1item", id="leading-digit"),
        pytest.param("item.2created", id="word-starting-with-digit"),
        pytest.param("_item", id="leading-underscore"),
        pytest.param("item-created", id="hyphen"),
        pytest.param("item created", id="space"),
        pytest.param("item.created\n", id="trailing-newline"),
        pytest.param("\nitem.created", id="leading-newline"),
        pytest.param("ïtem.created", id="non-ascii"),
        pytest.param("a" * 101, id="101-chars"),
    ],
)
def test_is_valid_type_name_refuses(name: str) -> None:
    assert catalog.is_valid_type_name(name) is False
