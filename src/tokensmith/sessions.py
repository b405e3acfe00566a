"""Sessions a user can see and end (README "Sessions"): the user's own live families with
their last use, one of them ended, or every one but the current.

Ownership is decided one way for every outcome: a session id counts only if it is in the
caller's own list, read with the caller's subject. Another user's ``sid`` and an id that
never existed therefore take the same path and give the same answer (``False``), and
nothing about the other user's session is read or written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokensmith.refresh.service import RefreshService
from tokensmith.store.protocols import AuditReader
from tokensmith.store.records import SessionActivity

# Enough for any real user; the bound keeps a request's work bounded.
MAX_SESSIONS = 1000
ENDED_BY_USER = "ended_by_user"


@dataclass(frozen=True)
class UserSession:
    """One of the user's live sessions; ``current`` when it is the caller's own (the
    ``sid`` of the access token making the request)."""

    session_id: str
    client_id: str
    created_at: float
    last_used_at: float
    ip: str | None
    user_agent: str | None
    current: bool

    @classmethod
    def of(cls, activity: SessionActivity, current: str | None) -> UserSession:
        return cls(
            activity.family_id,
            activity.client_id,
            activity.created_at,
            activity.created_at if activity.last_used_at is None else activity.last_used_at,
            activity.ip,
            activity.user_agent,
            activity.family_id == current,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "sid": self.session_id,
            "client_id": self.client_id,
            "created_at": int(self.created_at),
            "last_used_at": int(self.last_used_at),
            "ip": self.ip,
            "user_agent": self.user_agent,
            "current": self.current,
        }


class UserSessions:
    """The operations behind ``GET /sessions`` and friends, for one store."""

    def __init__(self, reader: AuditReader, service: RefreshService) -> None:
        self._reader = reader
        self._service = service

    def _own(self, subject: str, now: float) -> list[SessionActivity]:
        return self._reader.list_sessions(subject, now, MAX_SESSIONS)

    def list(self, subject: str, now: float, current: str | None) -> list[UserSession]:
        return [UserSession.of(activity, current) for activity in self._own(subject, now)]

    def end(self, subject: str, session_id: str, now: float) -> bool:
        """End ``session_id`` if it is one of ``subject``'s live sessions; else ``False``
        whether it belongs to someone else or to no one."""
        if session_id not in {a.family_id for a in self._own(subject, now)}:
            return False
        return self._service.revoke_family(session_id, reason=ENDED_BY_USER)

    def end_others(self, subject: str, current: str | None, now: float) -> int:
        """End every live session of ``subject`` but ``current``; how many ended. A listing
        holds at most ``MAX_SESSIONS``, so this lists again until one is not full."""
        ended = 0
        while True:
            own = self._own(subject, now)
            others = [a.family_id for a in own if a.family_id != current]
            done = sum(self._service.revoke_family(f, reason=ENDED_BY_USER) for f in others)
            ended += done
            if len(own) < MAX_SESSIONS or done == 0:
                return ended
