"""Opaque refresh tokens and the rotation service (docs/contract.md "Refresh store semantics")."""

from __future__ import annotations

from tokensmith.refresh.reuse import (
    RequestContext,
    ReuseIncident,
    ReuseKind,
    ReusePolicy,
    revoke_subject_on_reuse,
)
from tokensmith.refresh.secret import SecretSource
from tokensmith.refresh.service import RefreshService, Session

__all__ = [
    "RefreshService",
    "RequestContext",
    "ReuseIncident",
    "ReuseKind",
    "ReusePolicy",
    "SecretSource",
    "Session",
    "revoke_subject_on_reuse",
]
