"""Reuse incidents: classification and the policy hook (docs/contract.md "Refresh store semantics").

The default response to reuse is fixed: the whole family is revoked and that revocation is
committed before ``RefreshTokenReused`` is raised (SECURITY R2; GoTrue commits with error,
fosite revokes in its own transaction). A policy may do more, e.g. end every session of the
subject or page someone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokensmith.refresh.service import RefreshService

# Two presentations this close together were in flight at the same time.
CONCURRENT_WINDOW = 2.0


class ReuseKind(StrEnum):
    CONCURRENT_RETRY = "concurrent_retry"  # both requests in flight at once (two tabs)
    LOST_RESPONSE = "lost_response"  # the child was never used: the first response was lost
    LATE_REPLAY = "late_replay"  # a newer token has been used since: a copy is being replayed


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who presented a token, for reuse events (HTTP fills these; library calls may not)."""

    ip: str | None = None
    user_agent: str | None = None
    # When the request arrived, by the server's clock: a refresh sent before a rotation of
    # the same token was durable is a concurrent loser, not a replay (SECURITY B3).
    received_at: float | None = None


@dataclass(frozen=True, slots=True)
class ReuseIncident:
    family_id: str
    subject: str
    client_id: str
    kind: ReuseKind
    token_hash_prefix: str
    first_used_at: float
    first_ip: str | None
    first_user_agent: str | None
    reused_at: float
    reuse_client_id: str
    reuse_ip: str | None
    reuse_user_agent: str | None
    family_revoked: bool

    def event_data(self) -> dict[str, Any]:
        return {
            "family_id": self.family_id,
            "subject": self.subject,
            "client_id": self.client_id,
            "classification": self.kind.value,
            "token": self.token_hash_prefix,
            "family_revoked": self.family_revoked,
            "first_use": {
                "at": self.first_used_at,
                "client_id": self.client_id,
                "ip": self.first_ip,
                "user_agent": self.first_user_agent,
            },
            "reuse": {
                "at": self.reused_at,
                "client_id": self.reuse_client_id,
                "ip": self.reuse_ip,
                "user_agent": self.reuse_user_agent,
            },
        }


def classify(*, used_at: float, now: float, child_used: bool) -> ReuseKind:
    if now - used_at <= CONCURRENT_WINDOW:
        return ReuseKind.CONCURRENT_RETRY
    if child_used:
        return ReuseKind.LATE_REPLAY
    return ReuseKind.LOST_RESPONSE


# Called after the family revocation committed and before RefreshTokenReused is raised.
ReusePolicy = Callable[["ReuseIncident", "RefreshService"], None]


def revoke_subject_on_reuse(incident: ReuseIncident, service: RefreshService) -> None:
    """A stricter policy: reuse ends every session of the subject (logout everywhere)."""
    service.revoke_subject(incident.subject)
