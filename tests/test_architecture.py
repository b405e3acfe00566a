"""Habits the import linter cannot see (issue #12 item 7; ARCHITECTURE.md): a production
class offers its protocol and nothing that exists only for tests."""

from __future__ import annotations

from tokensmith.store.protocols import RefreshTransaction
from tokensmith.store.sql import SqlTransaction


def _public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def test_the_sql_unit_of_work_offers_exactly_the_transaction_protocol() -> None:
    # Fault-injection tests run their SQL on the unit's cursor (tests/refresh/test_faults.py).
    assert _public(SqlTransaction) == _public(RefreshTransaction)
