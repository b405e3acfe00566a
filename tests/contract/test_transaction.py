"""The unit of work itself (:class:`tokensmith.store.protocols.RefreshTransaction`), driven
directly on every store: what each write does, what the store refuses (the SQL store's keys
and constraints), and that a unit which raises leaves nothing behind (SECURITY R4)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest

from tokensmith.settings import MAX_LEEWAY
from tokensmith.store.protocols import RefreshTransaction
from tokensmith.store.records import FamilyRecord, NewToken, Revocation, StoreError

from ..refresh.conftest import T0
from .conftest import Store, everything_revoked, sessions

DAY = 86_400.0


def family(family_id: str, *, subject: str = "alice", client_id: str = "spa") -> FamilyRecord:
    return FamilyRecord(
        family_id, subject, client_id, "openid", ("api",), int(T0), ("pwd",), None, T0, T0 + DAY
    )


def token(family_id: str, parent: bytes | None = None, *, salt: bytes | None = None) -> NewToken:
    return NewToken(secrets.token_bytes(32), family_id, parent, salt, T0, T0 + DAY)


class Seeded(NamedTuple):
    root: NewToken
    child: NewToken


def seed(store: Store) -> Seeded:
    """Family ``f1`` of alice: a used root token and its live, salted child, one access
    token recorded."""
    root = token("f1")
    child = token("f1", root.token_hash, salt=b"s" * 16)

    def work(tx: RefreshTransaction) -> None:
        tx.insert_family(family("f1"))
        tx.insert_token(root)
        assert tx.mark_used(root.token_hash, T0 + 1, "192.0.2.1", "tab")
        tx.insert_token(child)
        tx.record_access_token("j-old", "f1", T0 + 300)

    store.atomic(work)
    return Seeded(root, child)


def snapshot(store: Store) -> tuple[Any, ...]:
    """Everything the protocols show of the stored state."""
    families = sessions(store, "alice") + sessions(store, "bob")
    chains = [store.family_tokens(f.family_id) for f in families]
    return families, chains, everything_revoked(store), store.client_registry().list_clients()


class Boom(Exception):
    pass


NOW = T0 + 10
WRITES: dict[str, Callable[[RefreshTransaction, Seeded], object]] = {
    "insert_family": lambda tx, s: tx.insert_family(family("f2")),
    "insert_token": lambda tx, s: tx.insert_token(token("f1", s.child.token_hash)),
    "mark_used": lambda tx, s: tx.mark_used(s.child.token_hash, NOW, "198.51.100.7", "ua"),
    "count_grace_retry": lambda tx, s: tx.count_grace_retry(s.root.token_hash, 3),
    "record_access_token": lambda tx, s: tx.record_access_token("j-new", "f1", NOW + 300),
    "revoke_family": lambda tx, s: tx.revoke_family("f1", NOW, "admin", "me"),
    "revoke_subject": lambda tx, s: tx.revoke_subject("alice", NOW),
    "deny_access_token": lambda tx, s: tx.deny_access_token("j-new", NOW + 300),
}


@pytest.mark.parametrize("write", [*WRITES, "all of them"])
def test_a_unit_that_raises_leaves_the_store_as_it_was(store: Store, write: str) -> None:
    seeded = seed(store)
    before = snapshot(store)
    writes = list(WRITES.values()) if write == "all of them" else [WRITES[write]]

    def work(tx: RefreshTransaction) -> None:
        for each in writes:
            assert each(tx, seeded) not in (False, [])  # it did write something
        raise Boom

    with pytest.raises(Boom):
        store.atomic(work)
    assert snapshot(store) == before
    with pytest.raises(Boom):
        store.pending(work)
    assert snapshot(store) == before
    # Nothing half-done either: the access token of the undone unit was never recorded.
    assert store.atomic(lambda tx: tx.revoke_family("f1", NOW, "admin", None)) is not None
    assert everything_revoked(store).denied_jtis == {"j-old"}


CONFLICTS: dict[str, Callable[[RefreshTransaction, Seeded], object]] = {
    "a second family with the same id": lambda tx, s: tx.insert_family(family("f1")),
    "a token stored twice": lambda tx, s: tx.insert_token(s.child),
    "a token of an unknown family": lambda tx, s: tx.insert_token(token("nope")),
    "a child of an unknown token": lambda tx, s: tx.insert_token(token("f1", b"\0" * 32)),
    "a second child of one token": lambda tx, s: tx.insert_token(token("f1", s.root.token_hash)),
    "an access token of an unknown family": lambda tx, s: tx.record_access_token(
        "j-new", "nope", NOW
    ),
    "an access token recorded twice": lambda tx, s: tx.record_access_token("j-old", "f1", NOW),
}


@pytest.mark.parametrize("conflict", CONFLICTS)
def test_the_store_refuses_what_would_break_a_family(store: Store, conflict: str) -> None:
    """A token has at most one child, so a fork is impossible even under a bug; ids are
    unique; nothing refers to what does not exist."""
    seeded = seed(store)
    before = snapshot(store)
    with pytest.raises(StoreError):
        store.atomic(lambda tx: CONFLICTS[conflict](tx, seeded))
    assert snapshot(store) == before


def test_mark_used_is_a_compare_and_set(store: Store) -> None:
    seeded = seed(store)
    child = seeded.child.token_hash
    assert store.atomic(lambda tx: tx.mark_used(child, NOW, "198.51.100.7", "ua")) is True
    record = store.find_token(child)
    assert record is not None
    assert (record.used_at, record.used_ip, record.used_user_agent) == (NOW, "198.51.100.7", "ua")
    assert record.salt is None  # a used token's salt has served (SECURITY B1)
    for digest in (child, seeded.root.token_hash, b"\0" * 32):
        assert store.atomic(lambda tx, d=digest: tx.mark_used(d, NOW, None, None)) is False
    fresh = token("f1", child)
    store.atomic(lambda tx: tx.insert_token(fresh))
    store.atomic(lambda tx: tx.revoke_family("f1", NOW, "admin", None))
    assert store.atomic(lambda tx: tx.mark_used(fresh.token_hash, NOW, None, None)) is False


def test_grace_retries_are_counted_up_to_the_limit_and_never_on_a_revoked_token(
    store: Store,
) -> None:
    root = seed(store).root.token_hash
    counted = [store.atomic(lambda tx: tx.count_grace_retry(root, 2)) for _ in range(3)]
    assert counted == [True, True, False]
    record = store.find_token(root)
    assert record is not None and record.grace_retries == 2
    store.atomic(lambda tx: tx.revoke_family("f1", NOW, "admin", None))
    assert store.atomic(lambda tx: tx.count_grace_retry(root, 9)) is False


def test_the_child_of_a_token_is_found_with_its_family(store: Store) -> None:
    seeded = seed(store)
    child = store.atomic(lambda tx: tx.get_child(seeded.root.token_hash))
    assert child is not None and child.token_hash == seeded.child.token_hash
    assert child.parent_hash == seeded.root.token_hash and child.family == family("f1")
    assert store.atomic(lambda tx: tx.get_child(seeded.child.token_hash)) is None
    assert store.atomic(lambda tx: tx.get_token(seeded.child.token_hash)) == child
    assert store.find_token(seeded.child.token_hash) == child


def test_revoking_a_family_revokes_its_tokens_denies_its_verifiable_access_tokens_and_is_audited(
    store: Store,
) -> None:
    seed(store)
    store.atomic(lambda tx: tx.record_access_token("j-gone", "f1", NOW - MAX_LEEWAY))
    store.atomic(lambda tx: tx.record_access_token("j-leeway", "f1", NOW - MAX_LEEWAY + 1))
    revoked = store.atomic(lambda tx: tx.revoke_family("f1", NOW, "admin", "operator"))
    assert revoked == family("f1")._replace(revoked_at=NOW, revoke_reason="admin")
    assert all(t.revoked_at == NOW and t.salt is None for t in store.family_tokens("f1"))
    # Past exp + MAX_LEEWAY a token verifies nowhere: no denylist entry needed.
    assert everything_revoked(store).denied_jtis == {"j-old", "j-leeway"}
    assert store.atomic(lambda tx: tx.revoke_family("f1", NOW + 1, "again", None)) is None
    assert store.atomic(lambda tx: tx.revoke_family("nope", NOW, "admin", None)) is None
    (summary,) = sessions(store)
    assert summary.revocations == (Revocation(NOW, "admin", "operator"),)
    assert (summary.revoked_at, summary.revoke_reason) == (NOW, "admin")


def test_revoking_a_subject_ends_its_live_families_and_sets_its_not_before(store: Store) -> None:
    seed(store)

    def others(tx: RefreshTransaction) -> None:
        for fid, subject in (("f2", "alice"), ("f3", "alice"), ("f4", "bob")):
            tx.insert_family(family(fid, subject=subject))
        tx.revoke_family("f3", NOW - 1, "admin", None)
        tx.record_access_token("j-f2", "f2", NOW + 300)

    store.atomic(others)
    revoked = store.atomic(lambda tx: tx.revoke_subject("alice", NOW))
    assert sorted(revoked) == ["f1", "f2"]
    everything = everything_revoked(store)
    assert everything.subject_not_before == {"alice": NOW}
    assert everything.revoked_families == {"f1", "f2", "f3"}
    # The not-before covers the subject's access tokens: no denylist entry each.
    assert everything.denied_jtis == frozenset()
    trail = {f.family_id: f.revocations for f in sessions(store)}
    assert trail["f2"] == (Revocation(NOW, "subject_revoked", None),)
    assert trail["f3"] == (Revocation(NOW - 1, "admin", None),)
    assert store.atomic(lambda tx: tx.revoke_subject("carol", NOW + 5)) == []
    assert everything_revoked(store).subject_not_before == {"alice": NOW, "carol": NOW + 5}
    assert store.atomic(lambda tx: tx.revoke_subject("alice", NOW + 6)) == []
    assert everything_revoked(store).subject_not_before["alice"] == NOW + 6


def test_a_clients_families_are_its_live_ones(store: Store) -> None:
    def families(tx: RefreshTransaction) -> None:
        tx.insert_family(family("live", client_id="cli"))
        tx.insert_family(family("revoked", client_id="cli"))
        tx.insert_family(family("other", client_id="spa"))
        tx.revoke_family("revoked", NOW, "admin", None)

    store.atomic(families)
    assert store.atomic(lambda tx: tx.client_families("cli", NOW)) == ["live"]
    assert store.atomic(lambda tx: tx.client_families("cli", T0 + DAY)) == []  # expired


def test_a_denied_jti_keeps_its_first_expiry(store: Store) -> None:
    store.atomic(lambda tx: tx.deny_access_token("j1", NOW + 300))
    store.atomic(lambda tx: tx.deny_access_token("j1", NOW + 9_000))
    assert store.load_revocations(NOW + 300 + MAX_LEEWAY - 1, 0).denied_jtis == {"j1"}
    assert store.load_revocations(NOW + 300 + MAX_LEEWAY, 0).denied_jtis == frozenset()


def test_the_revocation_list_holds_what_may_still_matter(store: Store) -> None:
    """Families revoked and not-befores set after ``now - horizon``; jtis until their
    ``exp`` + ``MAX_LEEWAY`` (SECURITY B4)."""
    seed(store)
    store.atomic(lambda tx: tx.revoke_family("f1", NOW, "admin", None))
    store.atomic(lambda tx: tx.revoke_subject("bob", NOW))
    assert store.load_revocations(NOW + 99, 100) == everything_revoked(store)
    later = store.load_revocations(NOW + 100, 100)
    assert later.revoked_families == frozenset() and later.subject_not_before == {}
    assert later.denied_jtis == {"j-old"}  # exp T0 + 300 + MAX_LEEWAY not passed yet


def test_salts_are_cleared_oldest_first_in_batches(store: Store) -> None:
    salted = [
        NewToken(secrets.token_bytes(32), "f1", None, b"s" * 16, T0 + i, T0 + DAY) for i in range(3)
    ]

    def work(tx: RefreshTransaction) -> None:
        tx.insert_family(family("f1"))
        for each in salted:
            tx.insert_token(each)

    store.atomic(work)
    assert store.clear_salts(T0 + 1, 1) == 1
    assert store.clear_salts(T0 + 1, 5) == 1  # issued at the cutoff counts
    assert store.clear_salts(T0 + 1, 5) == 0
    assert [t.salt is None for t in store.family_tokens("f1")] == [True, True, False]


def test_a_family_chain_is_in_issue_order_and_sessions_newest_first(store: Store) -> None:
    def work(tx: RefreshTransaction) -> None:
        for i in range(3):
            tx.insert_family(family(f"f{i}")._replace(created_at=T0 + i))
            tx.insert_token(token(f"f{i}")._replace(issued_at=T0 + 3 - i))
            tx.insert_token(token(f"f{i}")._replace(issued_at=T0 + 5))

    store.atomic(work)
    assert [f.family_id for f in sessions(store)] == ["f2", "f1", "f0"]
    assert [f.family_id for f in store.audit_reader().list_families("alice", 2)] == ["f2", "f1"]
    assert [t.issued_at for t in store.family_tokens("f0")] == [T0 + 3, T0 + 5]
    assert store.family_tokens("nope") == []
    assert sessions(store, "nobody") == []


def test_a_proof_is_remembered_once_and_purged_once_no_instance_accepts_it(store: Store) -> None:
    """SECURITY D1's shared ledger: a replay names the same key and ``iat`` and is
    refused; cleanup deletes the proofs issued before its cutoff, oldest first, and no
    other."""
    keys = [secrets.token_bytes(32) for _ in range(4)]
    issued = [NOW - 2, NOW - 1, NOW, NOW + 1]

    def remember_all() -> list[bool]:
        return [
            store.atomic(lambda tx, k=k, t=t: tx.remember_proof(k, t))
            for k, t in zip(keys, issued, strict=True)
        ]

    assert remember_all() == [True] * 4
    assert remember_all() == [False] * 4
    # Only the key holder can sign another proof with the same jti: not this row's replay.
    assert store.atomic(lambda tx: tx.remember_proof(keys[3], NOW + 2)) is True
    assert store.purge_expired(NOW, 2, DAY, NOW + 1) == 2  # the two oldest first
    assert store.atomic(lambda tx: tx.remember_proof(keys[2], NOW)) is False  # kept
    assert store.purge_expired(NOW, 5, DAY, NOW + 1) == 1  # issued before the cutoff
    assert store.atomic(lambda tx: tx.remember_proof(keys[3], NOW + 1)) is False  # kept
    assert store.purge_expired(NOW, 5, DAY, NOW + 1) == 0
