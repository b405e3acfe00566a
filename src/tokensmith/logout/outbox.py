"""The logout outbox: what the stores keep for back-channel logout, and when to retry.

A family revocation writes one message per revocation whose client registered a
``backchannel_logout_uri``, in the revocation's own transaction (a transactional outbox), so
a logout is never lost between the commit and the delivery. Delivery is at-least-once: a
message leaves the outbox only once its receiver answered 2xx, or after
``Settings.backchannel_max_attempts`` attempts. An instance *claims* due messages for a
lease (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite and the memory store: a conditional
update under their single writer), so each message is delivered by one instance at a time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

# Messages one instance claims at a time: its lease covers delivering all of them.
LOGOUT_BATCH = 16


@dataclass(frozen=True, slots=True)
class LogoutMessage:
    """One logout token to deliver. ``id`` is also the token's ``jti``, the same on every
    attempt, so a receiver that got a retry can recognise it (Back-Channel Logout 1.0 §2.6
    step 10)."""

    id: str
    client_id: str
    subject: str
    session_id: str
    attempts: int


class LogoutOutbox(Protocol):
    def claim_logouts(
        self, now: float, lease: float, limit: int, claimant: str
    ) -> list[LogoutMessage]:
        """Up to ``limit`` due messages no one else holds, now held by ``claimant`` until
        ``now + lease``: while the lease runs, no other claimant gets them."""
        ...

    def logout_delivered(self, message_id: str, claimant: str) -> None:
        """Forget a delivered message (if ``claimant`` still holds it)."""
        ...

    def logout_failed(self, message_id: str, claimant: str, retry_at: float | None) -> None:
        """Release a message for another attempt at ``retry_at``, or forget it (``None``:
        no attempts left)."""
        ...

    def pending_logouts(self) -> int:
        """How many messages are waiting (operators, tests)."""
        ...


@runtime_checkable
class KeepsLogouts(Protocol):
    """A refresh store that queues back-channel logouts (both stores here do)."""

    def logout_outbox(self) -> LogoutOutbox: ...


def backoff(attempts: int, base: float, cap: float) -> float:
    """Seconds before attempt ``attempts + 1``: exponential, capped, with jitter in
    [50 %, 100 %] so that instances retrying a receiver that was down do not come back in
    lockstep ("equal jitter")."""
    delay: float = min(cap, base * 2.0 ** min(attempts, 32))
    return delay * random.uniform(0.5, 1.0)
