"""Prefixed, sortable ids (tidings.domain.ids)."""

from __future__ import annotations

import itertools
import re

import pytest

from tidings.domain import ids
from tidings.domain.ids import PREFIXES, is_id, new_id

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
DESIGN_PREFIXES = ("app", "wh", "evt", "dlv", "key", "usr")
FIXED_NOW = 1_700_000_000.123


@pytest.fixture
def fresh_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget ids made earlier in this process, so that a `now` in the past is honoured."""
    monkeypatch.setattr(ids, "_last", (0, 0))


def _decode(text: str) -> int:
    value = 0
    for char in text:
        value = value * 32 + CROCKFORD.index(char)
    return value


def test_design_prefixes_are_all_known() -> None:
    assert set(DESIGN_PREFIXES) <= set(PREFIXES)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_new_id_shape(prefix: str) -> None:
    value = new_id(prefix)
    assert re.fullmatch(rf"{prefix}_[0-9A-HJKMNP-TV-Z]{{26}}", value)
    assert value.startswith(prefix + "_")
    assert len(value) == len(prefix) + 1 + 26
    assert is_id(value, prefix)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_new_id_is_not_an_id_of_another_prefix(prefix: str) -> None:
    value = new_id(prefix)
    for other in PREFIXES:
        if other != prefix:
            assert not is_id(value, other)


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param("", id="empty"),
        pytest.param("WH", id="uppercase-WH"),
        pytest.param("wh_", id="with-underscore"),
        pytest.param("webhook", id="long-name-webhook"),
        pytest.param("x", id="unknown-x"),
        pytest.param(" wh", id="leading-space"),
    ],
)
def test_new_id_unknown_prefix_raises(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        new_id(prefix)


def test_new_id_encodes_the_millisecond_time(fresh_generator: None) -> None:
    value = new_id("evt", now=FIXED_NOW)
    body = value.split("_", 1)[1]
    assert _decode(body[:10]) == int(FIXED_NOW * 1000)
    assert body[0] in "01234567"  # 128 bits in 130: the top two are zero


def test_ids_are_strictly_increasing_in_the_same_millisecond(fresh_generator: None) -> None:
    made = [new_id("dlv", now=FIXED_NOW) for _ in range(10_000)]
    assert len(set(made)) == len(made)
    assert all(a < b for a, b in itertools.pairwise(made))
    assert made == sorted(made)
    bodies = {m.split("_", 1)[1][:10] for m in made}
    assert len(bodies) == 1  # all in that one millisecond


def test_ids_increase_across_prefixes_as_one_sequence(fresh_generator: None) -> None:
    made = [new_id(p, now=FIXED_NOW) for p in PREFIXES * 10]
    bodies = [m.split("_", 1)[1] for m in made]
    assert all(a < b for a, b in itertools.pairwise(bodies))


def test_ids_keep_increasing_when_the_clock_goes_back(fresh_generator: None) -> None:
    first = new_id("wh", now=FIXED_NOW)
    second = new_id("wh", now=FIXED_NOW - 60)
    third = new_id("wh", now=FIXED_NOW - 3600)
    assert first < second < third


def test_ids_sort_by_time(fresh_generator: None) -> None:
    earlier = new_id("wh", now=FIXED_NOW)
    later = new_id("wh", now=FIXED_NOW + 0.001)
    much_later = new_id("wh", now=FIXED_NOW + 86_400)
    assert earlier < later < much_later


def test_ids_without_now_are_strictly_increasing() -> None:
    made = [new_id("att") for _ in range(2_000)]
    assert all(a < b for a, b in itertools.pairwise(made))


VALID_BODY = "01HF7YAT00ABCDEFGHJKMNPQRS"
assert len(VALID_BODY) == 26


@pytest.mark.parametrize(
    ("value", "prefix", "expected"),
    [
        pytest.param(f"wh_{VALID_BODY}", "wh", True, id="valid"),
        pytest.param(f"wh_{'Z' * 26}", "wh", True, id="all-Z"),
        pytest.param(f"app_{VALID_BODY}", "wh", False, id="other-prefix"),
        pytest.param(f"wh_{VALID_BODY}", "app", False, id="other-prefix-asked"),
        pytest.param(f"whx_{VALID_BODY}", "wh", False, id="longer-prefix"),
        pytest.param(f"WH_{VALID_BODY}", "wh", False, id="uppercase-prefix"),
        pytest.param(f"wh{VALID_BODY}", "wh", False, id="no-underscore"),
        pytest.param(f"wh-{VALID_BODY}", "wh", False, id="hyphen"),
        pytest.param(f"wh_{VALID_BODY.lower()}", "wh", False, id="lowercase-body"),
        pytest.param(f"wh_{VALID_BODY[:-1]}", "wh", False, id="25-chars"),
        pytest.param(f"wh_{VALID_BODY}0", "wh", False, id="27-chars"),
        pytest.param(f"wh_{VALID_BODY[:-1]}I", "wh", False, id="letter-I"),
        pytest.param(f"wh_{VALID_BODY[:-1]}L", "wh", False, id="letter-L"),
        pytest.param(f"wh_{VALID_BODY[:-1]}O", "wh", False, id="letter-O"),
        pytest.param(f"wh_{VALID_BODY[:-1]}U", "wh", False, id="letter-U"),
        pytest.param(f"wh_{VALID_BODY}\n", "wh", False, id="trailing-newline"),
        pytest.param(f" wh_{VALID_BODY}", "wh", False, id="leading-space"),
        pytest.param(f"wh_{VALID_BODY} ", "wh", False, id="trailing-space"),
        pytest.param("wh_", "wh", False, id="prefix-only"),
        pytest.param("", "wh", False, id="empty"),
        pytest.param(f"wh_wh_{VALID_BODY}", "wh", False, id="prefix-twice"),
    ],
)
def test_is_id(value: str, prefix: str, expected: bool) -> None:
    assert is_id(value, prefix) is expected
