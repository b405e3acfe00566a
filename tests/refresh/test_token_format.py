"""Refresh-token format (docs/contract.md "Tokens"; SECURITY R7): strict shape and checksum checked
before any database access; hostile input never reaches SQL."""

from __future__ import annotations

import re
from typing import Any, NoReturn

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokensmith.clock import ManualClock
from tokensmith.errors import InvalidGrant
from tokensmith.events import EventBus
from tokensmith.refresh.opaque import (
    TOKEN_LENGTH,
    derive_child,
    format_token,
    is_well_formed,
    new_token,
)
from tokensmith.refresh.service import RefreshService
from tokensmith.store.sql import SqlStore

from .conftest import StatementCounter, make_settings

VALID = new_token()


def test_a_token_is_the_prefix_then_256_random_bits_then_a_checksum() -> None:
    token = new_token()
    assert re.fullmatch(r"tsr_[A-Za-z0-9_-]{49}", token)
    assert len(token) == TOKEN_LENGTH == 53
    assert len({new_token() for _ in range(1000)}) == 1000
    assert is_well_formed(token)


def test_derived_children_are_well_formed_and_depend_on_secret_salt_and_parent() -> None:
    child = derive_child(b"k", b"s" * 16, b"p" * 32)
    assert is_well_formed(child)
    assert child == derive_child(b"k", b"s" * 16, b"p" * 32)
    assert (
        len(
            {
                child,
                derive_child(b"K", b"s" * 16, b"p" * 32),
                derive_child(b"k", b"S" * 16, b"p" * 32),
                derive_child(b"k", b"s" * 16, b"P" * 32),
            }
        )
        == 4
    )


def test_format_refuses_anything_but_32_bytes() -> None:
    with pytest.raises(ValueError):
        format_token(b"\x00" * 31)


HOSTILE = {
    "padded": VALID + "=",
    "double padded": VALID + "==",
    "short": VALID[:-1],
    "empty": "",
    "prefix only": "tsr_",
    "one megabyte": "tsr_" + "A" * (1 << 20),
    "non-ASCII": VALID[:-7] + "é" + VALID[-6:],
    "NUL inside": VALID[:20] + "\x00" + VALID[21:],
    "trailing NUL": VALID + "\x00",
    "trailing newline": VALID + "\n",
    "leading space": " " + VALID[1:],
    "wrong prefix": "tsx_" + VALID[4:],
    "upper-case prefix": "TSR_" + VALID[4:],
    "wrong checksum": VALID[:-6] + ("AAAAAA" if VALID[-6:] != "AAAAAA" else "BBBBBA"),
    "standard base64 alphabet": VALID[:10] + "+" + VALID[11:],
    "SQL injection": "tsr_' OR 1=1 --" + "A" * 38,
    "not a string": b"tsr_" + VALID[4:].encode(),
}


@pytest.mark.parametrize("token", list(HOSTILE.values()), ids=list(HOSTILE))
def test_a_hostile_refresh_token_is_invalid_grant_without_a_database_query(
    store: SqlStore, clock: ManualClock, token: Any
) -> None:
    service = RefreshService(store, settings=make_settings(), clock=clock, events=EventBus())
    counter = StatementCounter(store.engine)
    with pytest.raises(InvalidGrant):
        service.rotate(token, client_id="spa", scope=None, access_jti="j", access_exp=1)
    assert counter.untouched


class ExplodingStore:
    """Any store access at all fails the test."""

    def __getattr__(self, name: str) -> NoReturn:
        raise AssertionError(f"store.{name} touched for a malformed token")


_SERVICE = RefreshService(
    ExplodingStore(),  # type: ignore[arg-type]
    settings=make_settings(),
    clock=ManualClock(),
    events=EventBus(),
)


def _rotate(token: str) -> None:
    with pytest.raises(InvalidGrant):
        _SERVICE.rotate(token, client_id="spa", scope=None, access_jti="j", access_exp=1)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_arbitrary_text_never_reaches_the_store(token: str) -> None:
    _rotate(token)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=0, max_value=TOKEN_LENGTH - 1),
    st.characters(codec="utf-8"),
)
def test_a_one_character_change_to_a_valid_token_never_reaches_the_store(
    position: int, replacement: str
) -> None:
    mutated = VALID[:position] + replacement + VALID[position + 1 :]
    if mutated != VALID:
        _rotate(mutated)


@settings(max_examples=200, deadline=None)
@given(
    st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        min_size=49,
        max_size=49,
    )
)
def test_random_tokens_of_the_right_shape_fail_the_checksum(body: str) -> None:
    token = "tsr_" + body
    if token != VALID and not is_well_formed(token):
        _rotate(token)
