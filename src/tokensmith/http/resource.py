"""Protecting an API: bearer-token verification for resource servers (RFC 6750, RFC 9068)
and DPoP-bound tokens (RFC 9449 §7, :mod:`tokensmith.http.resource_dpop`).

``BearerGuard`` holds the policy (audience, required scopes, where keys come from) and
turns every outcome into an RFC 6750 §3 challenge; ``BearerAuthMiddleware`` is a pure ASGI
middleware over it, and ``tokensmith.http.fastapi.require_token`` a FastAPI dependency;
``tokensmith.integrations`` puts it in Flask and Django REST framework.

Responses (RFC 6750 §3.1):

- no ``Authorization: Bearer`` credentials → 401, ``WWW-Authenticate: Bearer realm="..."``
  and no error code (another scheme, e.g. Basic, counts as none);
- a malformed Bearer header (empty, extra parts, characters outside RFC 6750 §2.1
  ``b64token``, several ``Authorization`` headers) → 400 ``invalid_request``;
- any verification failure (signature, ``typ``, claims, expiry, revocation, unknown
  ``kid``) → 401 ``invalid_token`` with a short ``error_description``;
- a valid token without every required scope → 403 ``insufficient_scope`` with ``scope``.

With DPoP (``Authorization: DPoP <token>`` and a ``DPoP`` proof) the same outcomes come with
a ``DPoP`` challenge naming the accepted ``algs``; a bad proof is 401
``invalid_dpop_proof``, a missing server nonce 401 ``use_dpop_nonce`` with ``DPoP-Nonce``.

Signature checks are CPU-bound and fast, so they run on the event loop unless they might
block: a revocation check against a local ``Tokensmith`` (its cache may query the
database) or a ``RemoteJwks`` that is due to fetch. Those go to the thread pool.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from tokensmith.clock import Clock, SystemClock
from tokensmith.dpop.proof import ProofVerifier
from tokensmith.errors import (
    ConfigError,
    InvalidDPoPProof,
    InvalidRequest,
    InvalidToken,
    TemporarilyUnavailable,
    TokensmithError,
    UseDPoPNonce,
)
from tokensmith.http.remote_jwks import RemoteJwks
from tokensmith.http.remote_revocations import RemoteRevocations
from tokensmith.http.resource_dpop import (
    DPoPInvalidToken,
    ResourceRequest,
    asgi_request,
    check_binding,
    credentials,
)
from tokensmith.keys.lifecycle import VerificationKey
from tokensmith.settings import Settings
from tokensmith.tokens.jws import KeyLookup
from tokensmith.tokens.verify import DEFAULT_ALGS, AccessTokenVerifier, Claims

if TYPE_CHECKING:
    from tokensmith.facade import Tokensmith

log = logging.getLogger("tokensmith.http.resource")

#: The ``scope["state"]`` key (``request.state.token_claims``) holding verified claims.
STATE_KEY = "token_claims"
# RFC 6750 §3: error_description and scope values exclude '"' and '\' and controls.
_UNSAFE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


class MissingToken(TokensmithError):
    """RFC 6750 §3.1: the request carries no bearer token; the challenge has no error."""

    error = ""
    status_code = 401


class InsufficientScope(TokensmithError):
    """RFC 6750 §3.1 ``insufficient_scope``."""

    error = "insufficient_scope"
    status_code = 403


class DPoPInsufficientScope(InsufficientScope):
    """``insufficient_scope`` for a DPoP-bound token: a DPoP challenge (RFC 9449 §7.1)."""


_DPOP_ERRORS = (InvalidDPoPProof, UseDPoPNonce, DPoPInvalidToken, DPoPInsufficientScope)


class _WouldBlock(Exception):
    """Raised by the event-loop key lookup when only a fetch could answer."""


class _CachedOnly:
    """A ``KeyLookup`` over a ``RemoteJwks`` that never fetches: it signals instead."""

    def __init__(self, remote: RemoteJwks) -> None:
        self._remote = remote

    def verification_key(self, kid: str) -> VerificationKey | None:
        if self._remote.fetch_due(kid):
            raise _WouldBlock
        return self._remote.cached_key(kid)


class BearerGuard:
    """Verifies bearer tokens for one resource (``audience``).

    Keys come from a local ``tokensmith`` (then its revocation list is consulted when
    ``check_revoked``) or from ``keys`` (any ``KeyLookup``: ``RemoteJwks``, ``JwkSet``,
    ``KeyManager``) together with the ``issuer`` they must name; then ``revocations`` (a
    started ``RemoteRevocations``) refuses what the issuer revoked.

    DPoP proofs are checked by ``dpop`` (default: the local tokensmith's, per its settings,
    or a ``ProofVerifier`` with the default algorithms and no nonces);
    ``public_base_url`` is the scheme and host clients address when a proxy rewrites them.
    ``share_proofs`` (with a local ``tokensmith``) records each accepted proof in its store,
    so another instance refuses a replay, as ``/token`` does: for endpoints that change
    state; it writes to the store on every DPoP request.
    """

    def __init__(
        self,
        *,
        audience: str,
        tokensmith: Tokensmith | None = None,
        keys: KeyLookup | None = None,
        issuer: str | None = None,
        clock: Clock | None = None,
        scopes: Iterable[str] = (),
        realm: str = "api",
        check_revoked: bool = True,
        leeway: float = Settings.leeway,
        max_lifetime: int = Settings.max_token_lifetime,
        max_bytes: int = Settings.max_token_bytes,
        algorithms: Iterable[str] = DEFAULT_ALGS,
        dpop: ProofVerifier | None = None,
        public_base_url: str | None = None,
        revocations: RemoteRevocations | None = None,
        share_proofs: bool = False,
    ) -> None:
        if not isinstance(audience, str) or not audience:
            raise ConfigError("audience must be a non-empty string")
        if (tokensmith is None) == (keys is None):
            raise ConfigError("pass exactly one of tokensmith= or keys=")
        if keys is not None and not issuer:
            raise ConfigError("keys= needs the issuer the tokens must name")
        if revocations is not None and keys is None:
            raise ConfigError("revocations= goes with keys= (a local tokensmith has its own)")
        if share_proofs and tokensmith is None:
            raise ConfigError("share_proofs= needs a local tokensmith= (its store keeps them)")
        self.audience = audience
        self.scopes = _scope_tuple(scopes)
        self.realm = _UNSAFE.sub("", realm)
        self._ts = tokensmith
        if dpop is None and tokensmith is not None:
            dpop = tokensmith.dpop.verifier
        self.dpop = dpop or ProofVerifier(clock=clock)
        self.public_base_url = public_base_url
        self._share_proofs = share_proofs
        self._check_revoked = check_revoked
        self._verifier: AccessTokenVerifier | None = None
        self._inline: AccessTokenVerifier | None = None
        self._revocations = revocations
        if keys is not None:
            assert issuer is not None
            options: dict[str, Any] = {
                "issuer": issuer,
                "clock": clock or SystemClock(),
                "leeway": leeway,
                "max_lifetime": max_lifetime,
                "max_bytes": max_bytes,
                "algorithms": algorithms,
            }
            inline: KeyLookup = _CachedOnly(keys) if isinstance(keys, RemoteJwks) else keys
            if revocations is not None:
                keys, inline = revocations.keys(keys), revocations.keys(inline)
            self._verifier = AccessTokenVerifier(keys, **options)
            self._inline = AccessTokenVerifier(inline, **options)

    # -- verification ---------------------------------------------------------------------
    def verify(self, token: str, *, scopes: Iterable[str] | None = None) -> Claims:
        """Synchronous and possibly blocking: claims of a valid token holding ``scopes``
        (default: the guard's), else ``InvalidToken`` / ``InsufficientScope``."""
        if self._ts is not None:
            claims = self._ts.verify_access_token(
                token, audience=self.audience, check_revoked=self._check_revoked
            )
        else:
            assert self._verifier is not None
            claims = self._remote_check(self._verifier.verify(token, audience=self.audience))
        required = self.scopes if scopes is None else _scope_tuple(scopes)
        self._check_scopes(claims, required, "bearer")
        return claims

    def _remote_check(self, claims: Claims) -> Claims:
        if self._revocations is not None and self._revocations.check(claims):
            raise InvalidToken("token revoked")
        return claims

    async def authenticate(
        self,
        authorization: Sequence[str],
        *,
        scopes: Iterable[str] | None = None,
        request: ResourceRequest | None = None,
    ) -> Claims:
        """Check the request's ``Authorization`` header values (and, for the DPoP scheme,
        ``request``'s proof); raise ``MissingToken``, ``InvalidRequest``, ``InvalidToken``,
        ``InsufficientScope``, ``InvalidDPoPProof``, ``UseDPoPNonce`` or
        ``TemporarilyUnavailable``, nothing else."""
        scheme, token = _credentials(authorization)
        required = self.scopes if scopes is None else _scope_tuple(scopes)
        with _fail_closed(scheme):
            if self._inline is not None:
                try:
                    claims = self._remote_check(self._inline.verify(token, audience=self.audience))
                except _WouldBlock:
                    claims = await run_in_threadpool(self.verify, token, scopes=())
            elif self._check_revoked:
                claims = await run_in_threadpool(self.verify, token, scopes=())
            else:
                claims = self.verify(token, scopes=())
            if self._share_proofs and scheme == "dpop":
                # The proof is written to the store: a slow or locked database must not
                # hold up every other request on the event loop.
                await run_in_threadpool(self._bind, claims, scheme, token, request)
            else:
                self._bind(claims, scheme, token, request)
        self._check_scopes(claims, required, scheme)
        return claims

    def authenticate_sync(
        self,
        authorization: Sequence[str],
        *,
        scopes: Iterable[str] | None = None,
        request: ResourceRequest | None = None,
    ) -> Claims:
        """``authenticate`` for WSGI frameworks (Flask, Django): the same outcomes, on the
        calling thread, which a JWKS fetch or a revocation lookup may block."""
        scheme, token = _credentials(authorization)
        required = self.scopes if scopes is None else _scope_tuple(scopes)
        with _fail_closed(scheme):
            claims = self.verify(token, scopes=())
            self._bind(claims, scheme, token, request)
        self._check_scopes(claims, required, scheme)
        return claims

    def _bind(
        self, claims: Claims, scheme: str, token: str, request: ResourceRequest | None
    ) -> None:
        proof = check_binding(
            self.dpop,
            claims,
            scheme,
            token,
            request,
            self.public_base_url,
            remember=not self._share_proofs,
        )
        if proof is not None and self._share_proofs:
            assert self._ts is not None
            self._ts.sessions.record_proof(proof)

    def _check_scopes(self, claims: Claims, required: tuple[str, ...], scheme: str) -> None:
        if not required:
            return
        granted = claims.get("scope")
        have = set(granted.split()) if isinstance(granted, str) else set()
        if not set(required) <= have:
            error = DPoPInsufficientScope if scheme == "dpop" else InsufficientScope
            raise error("the token lacks a required scope")

    # -- responses ------------------------------------------------------------------------
    def challenge(
        self, exc: TokensmithError, *, scopes: Iterable[str] | None = None
    ) -> tuple[int, dict[str, str]]:
        """Status and headers for ``exc`` (RFC 6750 §3; RFC 9449 §7.1: a DPoP request's
        failures get a ``DPoP`` challenge naming the accepted ``algs``)."""
        params = [f'realm="{self.realm}"']
        if isinstance(exc, TemporarilyUnavailable):
            return 503, {"Retry-After": "1", "Cache-Control": "no-store"}
        if exc.error:
            params.append(f'error="{exc.error}"')
            params.append(f'error_description="{_UNSAFE.sub("", exc.description)[:200]}"')
        if isinstance(exc, InsufficientScope):
            required = self.scopes if scopes is None else _scope_tuple(scopes)
            params.append(f'scope="{_UNSAFE.sub("", " ".join(required))}"')
        headers = {"Cache-Control": "no-store"}
        status = exc.status_code
        if isinstance(exc, _DPOP_ERRORS):
            params.append(f'algs="{" ".join(self.dpop.algorithms)}"')
            headers["WWW-Authenticate"] = "DPoP " + ", ".join(params)
            if isinstance(exc, InvalidDPoPProof | UseDPoPNonce):
                status = 401  # §7.1: at a resource server these are authentication failures
            if isinstance(exc, UseDPoPNonce):
                headers["DPoP-Nonce"] = exc.nonce
        else:
            headers["WWW-Authenticate"] = "Bearer " + ", ".join(params)
        return status, headers


@contextmanager
def _fail_closed(scheme: str) -> Iterator[None]:
    """Fail closed (SECURITY H6: every verifier exception is a 401), but keep the
    traceback for the operator. A DPoP request's token failures get a DPoP challenge."""
    try:
        yield
    except (DPoPInvalidToken, InvalidDPoPProof, UseDPoPNonce, TemporarilyUnavailable):
        raise
    except InvalidToken as exc:
        if scheme == "dpop":
            raise DPoPInvalidToken(exc.description) from None
        raise
    except Exception:
        log.exception("bearer token verification failed unexpectedly")
        error = DPoPInvalidToken if scheme == "dpop" else InvalidToken
        raise error("token could not be verified") from None


def error_body(exc: TokensmithError) -> dict[str, str]:
    """The JSON body of a rejection: ``error`` (absent for a missing token, RFC 6750
    §3.1) and ``error_description``."""
    body: dict[str, str] = {"error_description": exc.description}
    if exc.error:
        body = {"error": exc.error, **body}
    return body


def _credentials(authorization: Sequence[str]) -> tuple[str, str]:
    """The scheme (``bearer`` or ``dpop``) and token of the ``Authorization`` values."""
    found = credentials(authorization)
    if found is None:
        raise MissingToken("bearer token required")
    return found


def _scope_tuple(scopes: Iterable[str] | str) -> tuple[str, ...]:
    values = scopes.split() if isinstance(scopes, str) else [s for s in scopes]
    for value in values:
        if not isinstance(value, str) or not value or _UNSAFE.search(value) or " " in value:
            raise ConfigError(f"invalid scope token {value!r}")
    return tuple(values)


class BearerAuthMiddleware:
    """Pure ASGI middleware: every HTTP and WebSocket request outside ``exempt_paths``
    needs a valid bearer token. Verified claims are in ``request.state.token_claims``
    (``scope["state"]["token_claims"]``).

    ``exempt_paths``: exact paths, or prefixes written with a trailing ``*``
    (``"/public/*"``). Put ``CORSMiddleware`` outside this one so preflights pass.
    Accepts either ``guard=`` or the ``BearerGuard`` keyword arguments.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        guard: BearerGuard | None = None,
        exempt_paths: Iterable[str] = (),
        **guard_options: Any,
    ) -> None:
        if guard is not None and guard_options:
            raise TypeError("pass guard= or BearerGuard options, not both")
        self.app = app
        self.guard = guard if guard is not None else BearerGuard(**guard_options)
        paths = [exempt_paths] if isinstance(exempt_paths, str) else list(exempt_paths)
        self._exact = frozenset(p for p in paths if not p.endswith("*"))
        self._prefixes = tuple(p[:-1] for p in paths if p.endswith("*"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._exempt(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        values = [
            value.decode("latin-1")
            for name, value in scope.get("headers", ())
            if name.lower() == b"authorization"
        ]
        try:
            claims = await self.guard.authenticate(values, request=asgi_request(scope))
        except (
            MissingToken,
            InvalidRequest,
            InvalidToken,
            InsufficientScope,
            InvalidDPoPProof,
            UseDPoPNonce,
            TemporarilyUnavailable,
        ) as exc:
            await self._reject(scope, send, exc)
            return
        scope.setdefault("state", {})[STATE_KEY] = claims
        await self.app(scope, receive, send)

    def _exempt(self, path: str) -> bool:
        return path in self._exact or path.startswith(self._prefixes)

    async def _reject(self, scope: Scope, send: Send, exc: TokensmithError) -> None:
        status, headers = self.guard.challenge(exc)
        if scope["type"] == "websocket":
            # Closing before accept makes the server answer the handshake with 403.
            await send({"type": "websocket.close", "code": 1008, "reason": ""})
            return
        payload = json.dumps(error_body(exc), separators=(",", ":")).encode("utf-8")
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        raw += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode("ascii")),
        ]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": payload})
