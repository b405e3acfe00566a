"""The grant types ``/token`` serves, as one table (RFC 6749 §4 and §6).

``GRANTS`` is read by every part that needs the list: client validation
(``tokensmith.clients``), the token endpoint's dispatch (``tokensmith.http.grants`` keeps
one handler per entry, named after it) and discovery (``grant_types_supported``). Adding a
grant is one row here and one handler there (ARCHITECTURE.md "Where to change what").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GrantType:
    name: str
    # RFC 6749 §4.4: a grant that authenticates the client alone needs a client secret.
    confidential_only: bool = False


GRANTS: dict[str, GrantType] = {
    g.name: g
    for g in (
        GrantType("refresh_token"),  # RFC 6749 §6
        GrantType("client_credentials", confidential_only=True),  # RFC 6749 §4.4
    )
}
