"""The client registry's core: what a registered OAuth client is and how it authenticates.

Secrets are 256 random bits with a recognisable ``tss_`` prefix, shown once and stored
only as SHA-256 (a high-entropy secret needs no slow hash); comparison is constant-time.
A rotated secret keeps working until ``previous_secret_expires_at``, never after. Scopes,
audiences, grants and origins are deny-by-default: an empty list allows nothing (README
"Clients").
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple, Protocol, runtime_checkable
from urllib.parse import urlsplit

from tokensmith.errors import InvalidRequest, InvalidScope, TokensmithError
from tokensmith.grants import GRANTS

SECRET_PREFIX = "tss_"
# RFC 9068 §5: a client_credentials token's ``sub`` must never equal a user's. ``:`` is not
# allowed in a client id, so ``client:<id>`` names exactly one client; user ids may not
# start with it (``Tokensmith.issue`` refuses them).
CLIENT_SUBJECT_PREFIX = "client:"
_CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_ORIGIN = re.compile(
    r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9a-fA-F:]+\](:[0-9]{1,5})?"
)
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
# Compared against when a client is unknown, so timing does not reveal which ids exist.
_DUMMY_HASH = hashlib.sha256(b"tokensmith-no-such-client").digest()


@dataclass(frozen=True)
class Client:
    client_id: str
    confidential: bool
    secret_hash: bytes | None = field(default=None, repr=False)
    grant_types: tuple[str, ...] = ("refresh_token",)
    scopes: tuple[str, ...] = ()  # empty: no scope at all
    audiences: tuple[str, ...] = ()  # empty: the issuer's default audience only
    redirect_uris: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    cookie_mode: bool = False
    created_at: float = 0.0
    enabled: bool = True
    previous_secret_hash: bytes | None = field(default=None, repr=False)
    previous_secret_expires_at: float | None = None
    # OpenID Connect Back-Channel Logout 1.0 §2.2: where logout tokens are POSTed, and
    # whether the client needs the ``sid`` claim in them.
    backchannel_logout_uri: str | None = None
    backchannel_logout_session_required: bool = False
    # RFC 9449 §5.2: every token request must carry a DPoP proof.
    dpop_bound_access_tokens: bool = False

    def allows_scope(self, scope: str) -> bool:
        return set(scope.split()) <= set(self.scopes)

    def allows_audience(self, audience: str) -> bool:
        return audience in self.audiences


class ClientRegistry(Protocol):
    def get_client(self, client_id: str) -> Client | None: ...

    def add_client(self, client: Client) -> None:
        """Store a new client; raise ``InvalidRequest`` if the id is taken."""
        ...

    def list_clients(self) -> list[Client]: ...

    def update_client(self, client: Client) -> None:
        """Replace the stored client of the same id; raise ``InvalidRequest`` if unknown."""
        ...

    def delete_client(self, client_id: str) -> bool:
        """Remove the client; false if it was unknown."""
        ...


class ClientLogEntry(NamedTuple):
    """The revocation-log entry (:mod:`tokensmith.revocation.log`) that a registry change
    writes about its client: ``kind`` at ``at``."""

    kind: str
    at: float


@runtime_checkable
class LoggedClientRegistry(ClientRegistry, Protocol):
    """A registry kept in the store that keeps the revocation log (both stores here): a
    change and its log entry commit in one transaction, so no crash leaves a client deleted
    or disabled that the other instances and remote verifiers never hear about."""

    def write_client(
        self, client_id: str, client: Client | None, *, new: bool, log: ClientLogEntry | None
    ) -> bool:
        """Add ``client`` (``new``; ``InvalidRequest`` if the id is taken), replace the
        stored one (``InvalidRequest`` if unknown) or, when ``client`` is ``None``, delete
        ``client_id`` (false if it was unknown: nothing is then logged). ``log`` is
        appended for ``client_id`` in the same transaction."""
        ...


def client_subject(client_id: str) -> str:
    """The ``sub`` of ``client_id``'s own (client_credentials) tokens."""
    return CLIENT_SUBJECT_PREFIX + client_id


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def secret_matches(client: Client | None, secret: str, now: float) -> bool:
    """Constant-time check against the current secret and, until it expires at ``now``,
    the previous one. Both comparisons always run, so an unknown client, a client without
    a previous secret and a wrong secret all cost the same."""
    digest = hash_secret(secret)
    current = client.secret_hash if client and client.secret_hash else _DUMMY_HASH
    previous = client.previous_secret_hash if client and client.previous_secret_hash else None
    ok_current = hmac.compare_digest(digest, current)
    ok_previous = hmac.compare_digest(digest, previous or _DUMMY_HASH) and previous is not None
    in_overlap = (
        client is not None
        and client.previous_secret_expires_at is not None
        and now < client.previous_secret_expires_at
    )
    ok = ok_current or (ok_previous and in_overlap)
    return ok and client is not None and client.confidential


def rotated_secret(client: Client, *, now: float, overlap: float) -> tuple[Client, str]:
    """``client`` with a new secret; the current one stays valid for ``overlap`` seconds
    (it replaces any previous secret still in its overlap). Returns the new secret."""
    if not client.confidential:
        raise InvalidRequest(f"client {client.client_id!r} is public and has no secret")
    if not overlap >= 0:
        raise InvalidRequest("overlap must be zero or more seconds")
    secret = new_secret()
    rotated = replace(
        client,
        secret_hash=hash_secret(secret),
        previous_secret_hash=client.secret_hash if overlap > 0 else None,
        previous_secret_expires_at=now + overlap if overlap > 0 else None,
    )
    return rotated, secret


def checked_scope(scope: str) -> str:
    """``scope`` with its tokens separated by single spaces, or ``InvalidScope`` naming the
    first token that is not an RFC 6749 §3.3 scope-token (``"`` and ``\\`` are not)."""
    tokens = scope.split()
    for token in tokens:
        _require_scope_token(token, InvalidScope)
    return " ".join(tokens)


def _require_scope_token(token: str, error: type[TokensmithError]) -> None:
    if not _SCOPE_TOKEN.fullmatch(token):
        raise error(f"scope {token!r} is not an RFC 6749 §3.3 scope token")


def validated(client: Client) -> Client:
    """``client`` if its settings are coherent, else ``InvalidRequest`` naming the problem:
    the one check behind registration and ``update``."""
    if not _CLIENT_ID.fullmatch(client.client_id):
        raise InvalidRequest("client id: 1-64 of letters, digits, '.', '_', '-'")
    unknown = set(client.grant_types) - GRANTS.keys()
    if unknown:
        raise InvalidRequest(f"unsupported grant types: {', '.join(sorted(unknown))}")
    for name in client.grant_types:
        if GRANTS[name].confidential_only and not client.confidential:
            raise InvalidRequest(f"{name} needs a confidential client (RFC 6749 §4.4)")
    for scope in client.scopes:
        _require_scope_token(scope, InvalidRequest)
    for audience in client.audiences:
        if not audience or audience != audience.strip():
            raise InvalidRequest(f"audience {audience!r} must be a non-empty string")
    for origin in client.allowed_origins:
        if not _ORIGIN.fullmatch(origin):
            raise InvalidRequest(f"origin {origin!r} must be scheme://host[:port]")
    if client.cookie_mode and not client.allowed_origins:
        raise InvalidRequest("cookie mode needs at least one allowed origin")
    uri = client.backchannel_logout_uri
    if uri is not None and not safe_url(uri):
        raise InvalidRequest(
            "backchannel_logout_uri must be an https:// URL (http:// only on a loopback host) "
            "without a fragment (Back-Channel Logout 1.0 §2.2)"
        )
    return client


def safe_url(url: str) -> bool:
    """An absolute ``https`` URL, or ``http`` on a loopback host (development), with no
    fragment or credentials, whose host is not a link-local or unspecified address: no
    service a client runs lives there, a cloud's metadata service does (169.254.169.254),
    and the issuer POSTs to this URL on its own."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return False
    if not host or parts.fragment or parts.username is not None or url != url.strip():
        return False
    with contextlib.suppress(ValueError):
        address = ipaddress.ip_address(host)
        if address.is_link_local or address.is_unspecified:
            return False
    return parts.scheme == "https" or (parts.scheme == "http" and host in _LOOPBACK)


def new_client(
    client_id: str,
    *,
    confidential: bool,
    now: float,
    grant_types: Sequence[str] | None = None,
    scopes: Sequence[str] = (),
    audiences: Sequence[str] = (),
    redirect_uris: Sequence[str] = (),
    allowed_origins: Sequence[str] = (),
    cookie_mode: bool = False,
    backchannel_logout_uri: str | None = None,
    backchannel_logout_session_required: bool = False,
    dpop_bound_access_tokens: bool = False,
) -> tuple[Client, str | None]:
    """Validate and build a client; returns it with its secret (``None`` when public)."""
    every = tuple(g.name for g in GRANTS.values() if confidential or not g.confidential_only)
    grants = tuple(grant_types or every)
    secret = new_secret() if confidential else None
    client = Client(
        client_id=client_id,
        confidential=confidential,
        secret_hash=hash_secret(secret) if secret else None,
        grant_types=grants,
        scopes=tuple(scopes),
        audiences=tuple(audiences),
        redirect_uris=tuple(redirect_uris),
        allowed_origins=tuple(allowed_origins),
        cookie_mode=cookie_mode,
        dpop_bound_access_tokens=dpop_bound_access_tokens,
        created_at=now,
        backchannel_logout_uri=backchannel_logout_uri,
        backchannel_logout_session_required=backchannel_logout_session_required,
    )
    return validated(client), secret


class CachedClientRegistry:
    """Remembers found clients for ``ttl`` seconds: every token request authenticates a
    client, and the registry changes rarely. Unknown ids from a request are not remembered
    (a spray of random ids must not fill the cache); those the application itself names
    (:meth:`registered`) are. The cache is bounded all the same."""

    _MAX_ENTRIES = 4096

    def __init__(self, registry: ClientRegistry, *, ttl: float) -> None:
        self._registry = registry
        self._ttl = ttl
        self._entries: dict[str, tuple[float, Client | None]] = {}
        self._origins: tuple[float, frozenset[str]] | None = None

    @property
    def registry(self) -> ClientRegistry:
        """The registry behind the cache (writes go there, then :meth:`forget`)."""
        return self._registry

    def get_client(self, client_id: str) -> Client | None:
        return self._lookup(client_id, remember_unknown=False)

    def registered(self, client_id: str) -> Client | None:
        """``get_client`` for ids from the facade's trusted caller: an unregistered id (the
        usual case for a library user) is remembered too, so it costs no query each time."""
        return self._lookup(client_id, remember_unknown=True)

    def _lookup(self, client_id: str, *, remember_unknown: bool) -> Client | None:
        if not client_id.isprintable():
            # No client has a control character in its id (registration allows
            # [A-Za-z0-9._-]), and PostgreSQL refuses a NUL in a text parameter with an
            # error: such an id from a request is unknown, without a query.
            return None
        now = time.monotonic()
        hit = self._entries.get(client_id)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        client = self._registry.get_client(client_id)
        if (client is not None or remember_unknown) and self._ttl > 0:
            if len(self._entries) >= self._MAX_ENTRIES:
                self._entries.clear()
            self._entries[client_id] = (now, client)
        return client

    def browser_origins(self) -> frozenset[str]:
        """Every enabled cookie-mode client's allowed origins (the CORS allow-list), kept
        for ``ttl`` like a client: every preflight asks, unauthenticated, and reading the
        whole client table each time cost 230 ms with 5,000 clients."""
        now = time.monotonic()
        if self._origins is not None and now - self._origins[0] < self._ttl:
            return self._origins[1]
        origins = frozenset(
            origin
            for c in self._registry.list_clients()
            if c.cookie_mode and c.enabled
            for origin in c.allowed_origins
        )
        if self._ttl > 0:
            self._origins = (now, origins)
        return origins

    def add_client(self, client: Client) -> None:
        self._registry.add_client(client)
        self.forget(client.client_id)

    def list_clients(self) -> list[Client]:
        return self._registry.list_clients()

    def update_client(self, client: Client) -> None:
        self._registry.update_client(client)
        self.forget(client.client_id)

    def delete_client(self, client_id: str) -> bool:
        self.forget(client_id)
        return self._registry.delete_client(client_id)

    def forget(self, client_id: str) -> None:
        """Read ``client_id`` (and the origins, which it may change) afresh next time:
        this or another instance changed it."""
        self._entries.pop(client_id, None)
        self._origins = None
