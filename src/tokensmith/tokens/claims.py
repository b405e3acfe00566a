"""Application claims added to a session's access and ID tokens (README "Custom claims").

They are validated once, when ``issue`` or the refresh claims hook hands them over, kept on
the family (``FamilyRecord.claims``) and written after the protocol claims by
:mod:`tokensmith.tokens.mint`, which therefore never sees one of the names below.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from tokensmith.errors import InvalidRequest
from tokensmith.tokens.jws import _encode_json as _encode

# RFC 7519 §4.1 registered claims, RFC 9068 §2.2 / RFC 8693 §4 access-token claims and
# OIDC Core §2 / §3.1.3.6 ID-token claims that tokensmith itself sets; ``amr`` and ``acr``
# are ``issue``'s own arguments.
PROTECTED_CLAIMS = frozenset(
    {"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope", "sid", "cnf"}
    | {"azp", "at_hash", "nonce", "auth_time", "amr", "acr"}
)
# Serialised size bound of one set of claims: tokens travel in headers and cookies.
MAX_CLAIMS_BYTES = 4096


class SessionClaims(NamedTuple):
    """A family's application claims: one object for its access tokens, one for its ID
    tokens. Both are validated plain JSON objects; treat them as read-only."""

    access: dict[str, Any]
    id_token: dict[str, Any]

    def to_json(self) -> str:
        return _encode({"access": self.access, "id_token": self.id_token})

    @classmethod
    def from_json(cls, value: Any) -> SessionClaims | None:
        """The stored column: text (SQLite), already decoded (psycopg) or NULL."""
        if value is None:
            return None
        data = json.loads(value) if isinstance(value, str) else value
        return cls(dict(data["access"]), dict(data["id_token"]))


@dataclass(frozen=True)
class ClaimsRequest:
    """What the refresh claims hook is given: whose session is being refreshed and the
    access-token claims it carries now."""

    subject: str
    client_id: str
    scope: str
    claims: Mapping[str, Any]


# Returns the session's new access-token claims, or None to keep them.
ClaimsHook = Callable[[ClaimsRequest], Mapping[str, Any] | None]


def checked_claims(claims: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    """``claims`` as a JSON object of application claims, else ``InvalidRequest``: not a
    mapping, a non-string or protected name, a value JSON cannot hold, over the size bound."""
    if claims is None:
        return {}
    if not isinstance(claims, Mapping):
        raise InvalidRequest(f"{what} must be a mapping of claim names to JSON values")
    for name in claims:
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"{what}: claim names must be non-empty strings")
        if name in PROTECTED_CLAIMS:
            raise InvalidRequest(f"{what}: {name!r} is a protocol claim and cannot be set")
    try:
        # A round trip: the stored and signed form is exactly this JSON (tuples become lists).
        text = _encode(dict(claims))
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"{what} must be JSON-serialisable: {exc}") from None
    if len(text.encode("utf-8")) > MAX_CLAIMS_BYTES:
        raise InvalidRequest(f"{what} exceed {MAX_CLAIMS_BYTES} bytes as JSON")
    decoded: dict[str, Any] = json.loads(text)
    return decoded


def session_claims(
    claims: Mapping[str, Any] | None, id_token_claims: Mapping[str, Any] | None
) -> SessionClaims | None:
    """Both sets checked; ``None`` when there are none (nothing is stored)."""
    access = checked_claims(claims, "claims")
    id_token = checked_claims(id_token_claims, "id_token_claims")
    return SessionClaims(access, id_token) if access or id_token else None
