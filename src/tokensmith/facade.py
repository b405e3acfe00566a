"""``Tokensmith``: wires settings, keys, the refresh store and verification together.

Synchronous by design (ARCHITECTURE.md "Cross-cutting choices"): usable from Flask,
Django, scripts; the ASGI app calls it from its thread pool. The facade trusts its caller:
client authentication is the HTTP layer's job (docs/contract.md "Python API").
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from tokensmith.client_admin import ClientAdministration
from tokensmith.clients import (
    CLIENT_SUBJECT_PREFIX,
    CachedClientRegistry,
    Client,
    ClientRegistry,
    checked_scope,
    client_subject,
)
from tokensmith.clock import Clock, SystemClock
from tokensmith.dpop.deployment import NONCE_PURPOSE, DPoP, ProofHeader, binds_refresh_tokens
from tokensmith.errors import (
    ConfigError,
    InvalidClient,
    InvalidRequest,
    InvalidToken,
    TokensmithError,
)
from tokensmith.events import EventBus, Hook
from tokensmith.keys import FileKeyStore, KeyManager, KeyRecord, KeyStore, Signer
from tokensmith.logout.outbox import LOGOUT_BATCH
from tokensmith.revocation.log import CLIENT_DISABLED, CLIENT_ENABLED, KID, LogEntry
from tokensmith.settings import MEMORY_URL, Settings
from tokensmith.store.protocols import AuditReader, Registries
from tokensmith.tokens import (
    AccessTokenClaims,
    AccessTokenVerifier,
    IdTokenClaims,
    IdTokenVerifier,
    mint_access_token,
    mint_id_token,
    new_jti,
)
from tokensmith.tokens.claims import (
    ClaimsHook,
    ClaimsRequest,
    SessionClaims,
    checked_claims,
    session_claims,
)

if TYPE_CHECKING:
    from tokensmith.logout.delivery import DeliveryReport, LogoutDelivery
    from tokensmith.logout.outbox import LogoutOutbox
    from tokensmith.refresh.reuse import ReusePolicy
    from tokensmith.refresh.service import RefreshService, RequestContext, Session
    from tokensmith.sessions import UserSession, UserSessions
    from tokensmith.store.protocols import RefreshStore
    from tokensmith.store.records import FamilyRecord, FamilySummary

logger = logging.getLogger("tokensmith")

# A token hash no token has (tokens are random; SHA-256 of one is never all zeros): the
# readiness probe's lookup reads the index and finds nothing.
_PROBE_HASH = b"\0" * 32


@dataclass(frozen=True)
class TokenResponse:
    """What ``issue`` and ``refresh`` return; ``to_dict()`` is the RFC 6749 §5.1 body."""

    access_token: str
    token_type: str
    expires_in: int
    scope: str
    refresh_token: str | None = None
    id_token: str | None = None
    session_id: str | None = None
    refresh_expires_at: int | None = None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
        }
        # RFC 6749 §3.3: a scope is one or more scope-tokens, so an empty grant has none.
        if self.scope:
            body["scope"] = self.scope
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        if self.id_token is not None:
            body["id_token"] = self.id_token
        return body


class Tokensmith(ClientAdministration):
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        key_store: KeyStore | None = None,
        refresh_store: RefreshStore | None = None,
        client_registry: ClientRegistry | None = None,
        audit: AuditReader | None = None,
        events: EventBus | None = None,
        reuse_policy: ReusePolicy | None = None,
    ) -> None:
        """``key_store`` and ``refresh_store`` replace the ones ``settings`` would open (a
        KMS-backed key store, a store over an engine you configured yourself). The client
        registry and the audit reader come from the refresh store when it keeps them (both
        stores here do: :class:`tokensmith.store.Registries`), or are given here.
        ``database_url="memory://"`` opens the in-memory store (tests, demos; not durable).
        A key store with ``refresh_secret()`` (:class:`tokensmith.refresh.SecretSource`)
        keeps the grace-retry secret unless ``settings.refresh_secret`` is set (SECURITY B1).
        ``reuse_policy`` runs after a detected reuse has revoked the family (docs/contract.md
        "Refresh store semantics": e.g.
        ``tokensmith.refresh.revoke_subject_on_reuse`` logs the user out everywhere)."""
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.events = events or EventBus()
        store = key_store or _key_store(settings)
        self.keys = KeyManager(store, settings, self.clock, self.events)
        common: dict[str, Any] = {
            "issuer": settings.issuer,
            "clock": self.clock,
            "leeway": settings.leeway,
            "max_lifetime": settings.max_token_lifetime,
            "max_bytes": settings.max_token_bytes,
        }
        self._access_verifier = AccessTokenVerifier(self.keys, **common)
        # RFC 7662 §2.2: "active" means valid now, so introspection allows no clock skew.
        self._introspection_verifier = AccessTokenVerifier(self.keys, **{**common, "leeway": 0})
        self._id_verifier = IdTokenVerifier(self.keys, **common)
        self._refresh_store = refresh_store
        # Migrations are the caller's business for a store it built, ours otherwise, even
        # once ``sessions`` has opened the store (``setup()`` may come after first use).
        self._caller_store = refresh_store is not None
        self._client_registry = client_registry
        self._audit = audit
        self._reuse_policy = reuse_policy
        self._refresh: RefreshService | None = None
        self._clients: CachedClientRegistry | None = None
        self._refresh_lock = threading.Lock()
        self._claims_hook: ClaimsHook | None = None
        self._logout_delivery: LogoutDelivery | None = None
        self.dpop = DPoP(settings, self.clock, lambda: self.sessions.derived_key(NONCE_PURPOSE))

    # -- set-up ---------------------------------------------------------------------------
    def setup(self) -> None:
        """Run database migrations and make sure an active (and a pending) key exists."""
        self.migrate()
        self.keys.ensure_active()

    def migrate(self) -> list[str]:
        """Run the database migrations; the revisions applied (none when up to date). A
        refresh secret an older version kept in the database moves to the key store
        (SECURITY B1; migration 0005 deletes it there)."""
        if self._caller_store or _in_memory(self.settings):
            return []  # a store the caller built, or one with no schema to migrate
        from tokensmith.store.sql import upgrade

        moved: list[bytes] = []
        applied = upgrade(self.settings.database_url, refresh_secret_sink=moved.append)
        adopt = getattr(self.keys.store, "adopt_refresh_secret", None)
        if not moved or self.settings.refresh_secret is not None or adopt is None:
            return applied
        if not adopt(moved[0]):
            logger.warning("the key store has its own refresh secret; the old one is gone")
        return applied

    @property
    def sessions(self) -> RefreshService:
        """The refresh-token service, opened on first use (the database is not needed to
        verify tokens or publish keys)."""
        if self._refresh is None:
            with self._refresh_lock:
                if self._refresh is None:
                    from tokensmith.refresh.secret import SecretSource
                    from tokensmith.refresh.service import RefreshService

                    keys = self.keys.store
                    if self._refresh_store is None:
                        self._refresh_store = _open_store(self.settings)
                    self._refresh = RefreshService(
                        self._refresh_store,
                        settings=self.settings,
                        clock=self.clock,
                        events=self.events,
                        reuse_policy=self._reuse_policy,
                        # The grace-retry secret lives with the keys (SECURITY B1).
                        secret_source=keys if isinstance(keys, SecretSource) else None,
                        on_log_entry=self._log_entry,
                    )
        return self._refresh

    def _log_entry(self, entry: LogEntry) -> None:
        # Another instance may have disabled or enabled the client: read it afresh.
        if entry.kind in (CLIENT_DISABLED, CLIENT_ENABLED) and self._clients is not None:
            self._clients.forget(entry.key)

    @property
    def clients(self) -> CachedClientRegistry:
        """The client registry, kept by the refresh store unless one was given."""
        if self._clients is None:
            registry = self._client_registry or self._registries().client_registry()
            self._clients = CachedClientRegistry(registry, ttl=self.settings.client_cache_ttl)
        return self._clients

    def _registries(self) -> Registries:
        store = self.sessions.store
        if not isinstance(store, Registries):
            raise ConfigError(
                "this refresh_store keeps no clients or audit trail: "
                "pass client_registry= and audit= to Tokensmith"
            )
        return store

    def _refuse_disabled(self, client_id: str) -> Client | None:
        """A registered client that is disabled starts and continues no session, here as at
        the HTTP endpoints; an unregistered id is the caller's business (docs/contract.md
        "Python API"). Checked before any write, so a refused call changes nothing."""
        client = self.clients.registered(client_id)
        if client is not None and not client.enabled:
            raise InvalidClient("client is disabled")
        return client

    def browser_origins(self) -> frozenset[str]:
        """Every enabled cookie-mode client's allowed origins (the CORS allow-list), cached
        for ``client_cache_ttl`` like clients."""
        return self.clients.browser_origins()

    def on_event(self, hook: Hook) -> Hook:
        """Register an event hook (``issued``, ``rotated``, ``reuse_detected``, ...)."""
        return self.events.register(hook)

    def on_refresh_claims(self, hook: ClaimsHook) -> ClaimsHook:
        """Register the refresh claims hook: at every refresh it gets the session's subject,
        client, scope and current access-token claims and returns the new ones (``None``
        keeps them); they are stored on the family and carried on from there. ID-token
        claims stay as issued (OIDC Core §12.2). A second call replaces the hook."""
        self._claims_hook = hook
        return hook

    def _recompute_claims(self, family: FamilyRecord) -> SessionClaims | None:
        assert self._claims_hook is not None
        stored = family.claims or SessionClaims({}, {})
        request = ClaimsRequest(
            family.subject, family.client_id, family.scope, MappingProxyType(stored.access)
        )
        claims = self._claims_hook(request)
        if claims is None:
            return None
        return SessionClaims(checked_claims(claims, "refresh claims hook result"), stored.id_token)

    # -- issuing --------------------------------------------------------------------------
    def issue(
        self,
        *,
        subject: str,
        client_id: str,
        scope: str = "",
        audience: str | Sequence[str] | None = None,
        nonce: str | None = None,
        auth_time: datetime | float | None = None,
        amr: Sequence[str] | None = None,
        acr: str | None = None,
        claims: Mapping[str, Any] | None = None,
        id_token_claims: Mapping[str, Any] | None = None,
        dpop_proof: ProofHeader = None,
        htm: str = "POST",
        htu: str | None = None,
        dpop_jkt: str | None = None,
    ) -> TokenResponse:
        """Start a new session (a new family; a login never reuses a ``sid``) and mint its
        tokens. An ID token is issued only when ``scope`` contains ``openid``. ``claims``
        and ``id_token_claims`` are application claims for the access and the ID tokens,
        kept on the family for every refresh (:mod:`tokensmith.tokens.claims`).

        DPoP (RFC 9449): ``dpop_proof`` is the login request's ``DPoP`` header, verified for
        ``htm`` and ``htu`` (the login endpoint's URI; default the token endpoint); or
        ``dpop_jkt``, the thumbprint of a proof the application verified itself. The access
        token then carries ``cnf.jkt`` and a public client's refresh tokens are bound to
        that key (§5)."""
        for name, value in (("subject", subject), ("client_id", client_id)):
            if not isinstance(value, str) or not value:
                raise InvalidRequest(f"{name} must be a non-empty string")
        if subject.startswith(CLIENT_SUBJECT_PREFIX):
            raise InvalidRequest(f"subject may not start with {CLIENT_SUBJECT_PREFIX!r}")
        client = self._refuse_disabled(client_id)
        if not isinstance(scope, str):
            raise InvalidRequest("scope must be a space-separated string")
        extra = session_claims(claims, id_token_claims)
        # With dpop_jkt the application verified the proof itself (RFC 9449 §5.2 is met).
        proof = self.dpop.proof_for(None if dpop_jkt else client, dpop_proof, htm=htm, htu=htu)
        jkt = proof.jkt if proof is not None else _checked_jkt(dpop_jkt)
        signer = self.keys.signer()
        now = int(self.clock.now())
        lifetimes = self.settings.lifetimes_for(client_id)
        jti = new_jti()
        pending = self.sessions.start(
            subject=subject,
            client_id=client_id,
            scope=checked_scope(scope),
            audience=_audiences(audience, self.settings.issuer),
            auth_time=now if auth_time is None else _epoch(auth_time, "auth_time"),
            amr=tuple(amr or ()),
            acr=acr,
            access_jti=jti,
            access_exp=now + lifetimes.access_token_ttl,
            claims=extra,
            dpop_jkt=jkt if binds_refresh_tokens(client) else None,
            proof=proof,
        )
        # Signed while the commit may be in flight; handed out once it is durable.
        minted = self._mint(signer, pending.session, now, jti, nonce=nonce, jkt=jkt)
        pending.durable()
        return minted

    def refresh(
        self,
        refresh_token: str,
        *,
        client_id: str,
        scope: str | None = None,
        context: RequestContext | None = None,
        dpop_proof: ProofHeader = None,
        htm: str = "POST",
        htu: str | None = None,
    ) -> TokenResponse:
        """RFC 6749 §6: rotate ``refresh_token`` (reuse detection and grace as docs/contract.md
        says)
        and mint fresh tokens. ``scope`` may narrow, never widen, the grant. A disabled
        registered client gets ``InvalidClient`` and its token stays as it was.
        ``dpop_proof`` (``htu`` defaults to the token endpoint) binds the new access token
        and, the first time, the family; a bound family needs a proof by its key (RFC 9449
        §5; SECURITY D2)."""
        client = self._refuse_disabled(client_id)
        proof = self.dpop.proof_for(client, dpop_proof, htm=htm, htu=htu)
        signer = self.keys.signer()
        now = int(self.clock.now())
        jti = new_jti()
        pending = self.sessions.rotate(
            refresh_token,
            client_id=client_id,
            scope=None if scope is None else " ".join(scope.split()),
            access_jti=jti,
            access_exp=now + self.settings.lifetimes_for(client_id).access_token_ttl,
            context=context,
            recompute=None if self._claims_hook is None else self._recompute_claims,
            proof=proof,
            bind=binds_refresh_tokens(client),
        )
        minted = self._mint(
            signer, pending.session, now, jti, nonce=None, jkt=None if proof is None else proof.jkt
        )
        pending.durable()
        return minted

    def issue_client_token(
        self,
        *,
        client_id: str,
        scope: str = "",
        audience: str | None = None,
        dpop_proof: ProofHeader = None,
        htu: str | None = None,
    ) -> TokenResponse:
        """RFC 6749 §4.4 client credentials: an access token whose subject is the client
        itself, as ``client:<id>`` so it never equals a user's (RFC 9068 §5); no refresh
        token and no session (§4.4.3). With ``dpop_proof`` it is DPoP-bound (RFC 9449 §5),
        the proof's ``jti`` remembered where every instance sees it."""
        proof = self.dpop.proof_for(
            self.clients.registered(client_id), dpop_proof, htm="POST", htu=htu
        )
        if proof is not None:
            self.sessions.record_proof(proof)
        signer = self.keys.signer()
        now = int(self.clock.now())
        ttl = self.settings.lifetimes_for(client_id).access_token_ttl
        access = mint_access_token(
            signer,
            self.settings.issuer,
            AccessTokenClaims(
                subject=client_subject(client_id),
                client_id=client_id,
                audience=audience or self.settings.issuer,
                scope=scope,
                issued_at=now,
                expires_at=now + ttl,
                jti=new_jti(),
                jkt=None if proof is None else proof.jkt,
            ),
        )
        token_type = "Bearer" if proof is None else "DPoP"
        return TokenResponse(
            access_token=access, token_type=token_type, expires_in=ttl, scope=scope
        )

    def _mint(
        self,
        signer: Signer,
        session: Session,
        now: int,
        jti: str,
        *,
        nonce: str | None,
        jkt: str | None,
    ) -> TokenResponse:
        lifetimes = self.settings.lifetimes_for(session.client_id)
        audience = session.audience[0] if len(session.audience) == 1 else session.audience
        extra = session.claims or _NO_CLAIMS
        access = mint_access_token(
            signer,
            self.settings.issuer,
            AccessTokenClaims(
                subject=session.subject,
                client_id=session.client_id,
                audience=audience,
                scope=session.scope,
                issued_at=now,
                expires_at=now + lifetimes.access_token_ttl,
                jti=jti,
                session_id=session.family_id,
                extra=extra.access,
                jkt=jkt,
            ),
        )
        id_token = None
        if "openid" in session.scope.split():
            # OIDC Core §12.2: on refresh iss/sub/aud/azp stay, auth_time is the original
            # authentication time, and no nonce is sent again.
            id_token = mint_id_token(
                signer,
                self.settings.issuer,
                IdTokenClaims(
                    subject=session.subject,
                    client_id=session.client_id,
                    issued_at=now,
                    expires_at=now + lifetimes.id_token_ttl,
                    auth_time=session.auth_time,
                    session_id=session.family_id,
                    nonce=nonce,
                    amr=session.amr or None,
                    acr=session.acr,
                    access_token=access,
                    extra=extra.id_token,
                ),
            )
        return TokenResponse(
            access_token=access,
            token_type="DPoP" if jkt else "Bearer",
            expires_in=lifetimes.access_token_ttl,
            scope=session.scope,
            refresh_token=session.refresh_token,
            id_token=id_token,
            session_id=session.family_id,
            refresh_expires_at=session.refresh_expires_at,
        )

    # -- verifying ------------------------------------------------------------------------
    def verify_access_token(
        self, token: str, *, audience: str, check_revoked: bool = True
    ) -> dict[str, Any]:
        """RFC 9068 §4 verification; with ``check_revoked`` the revocation list (denied
        ``jti``, revoked family, per-subject not-before) is consulted through a cache."""
        claims = self._access_verifier.verify(token, audience=audience)
        if check_revoked and self._revoked(claims):
            raise InvalidToken("token revoked")
        return claims

    def _revoked(self, claims: dict[str, Any]) -> bool:
        """Denied ``jti``, revoked family (``sid``) or issued before the subject's cut-off."""
        sid = claims.get("sid")
        client_id = claims.get("client_id")
        return self.sessions.is_access_token_revoked(
            jti=claims["jti"],
            subject=claims["sub"],
            issued_at=int(claims["iat"]),
            family_id=sid if isinstance(sid, str) else None,
            client_id=client_id if isinstance(client_id, str) else None,
        )

    def verify_id_token(
        self, token: str, *, client_id: str, nonce: str | None = None
    ) -> dict[str, Any]:
        return self._id_verifier.verify(token, client_id=client_id, nonce=nonce)

    # -- revoking -------------------------------------------------------------------------
    def revoke_refresh_token(self, token: str, *, client_id: str | None = None) -> bool:
        """RFC 7009 §2.1: revoking a refresh token revokes its whole family."""
        return self.sessions.revoke_refresh_token(token, client_id=client_id)

    def revoke_token(self, token: str, *, client_id: str) -> bool:
        """RFC 7009 §2.1 for either kind of token, on behalf of ``client_id``: a refresh token
        revokes its family; an access token is denied by ``jti`` until its ``exp``. Another
        client's token, or garbage, is left alone and reported as ``False``."""
        if token.startswith("tsr_"):
            return self.revoke_refresh_token(token, client_id=client_id)
        try:
            claims = self._access_verifier.verify(token, audience=None)
        except TokensmithError:
            return False
        if claims["client_id"] != client_id:
            return False
        self.sessions.revoke_access_token(claims["jti"], int(claims["exp"]))
        return True

    def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662 §2.2: the claims of an active token, else exactly ``{"active": false}``.
        Active means within ``nbf``..``exp`` now, with no leeway, and not revoked."""
        if token.startswith("tsr_"):
            session = self.sessions.describe(token)
            if session is None:
                return {"active": False}
            return {
                "active": True,
                "token_type": "refresh_token",
                "client_id": session.client_id,
                "sub": session.subject,
                "scope": session.scope,
                "exp": session.refresh_expires_at,
                "iss": self.settings.issuer,
                "sid": session.family_id,
            }
        try:
            claims = self._introspection_verifier.verify(token, audience=None)
            revoked = self._revoked(claims)
        except TokensmithError:
            return {"active": False}
        if revoked:
            return {"active": False}
        # RFC 9449 §6.2: a bound token's cnf is among its claims, and its type is DPoP.
        return {"active": True, "token_type": "DPoP" if "cnf" in claims else "Bearer", **claims}

    def revoke_family(self, family_id: str) -> bool:
        return self.sessions.revoke_family(family_id)

    def revoke_subject(self, subject: str) -> int:
        """Logout everywhere: end every family of ``subject``; earlier access tokens fail."""
        return self.sessions.revoke_subject(subject)

    def revoke_access_token(self, jti: str, expires_at: datetime | float) -> None:
        self.sessions.revoke_access_token(jti, int(_epoch(expires_at, "expires_at")))

    def families(self, subject: str, *, limit: int = 100) -> list[FamilySummary]:
        """A user's newest sessions with their revocation audit trail (operators, CLI)."""
        audit = self._audit or self._registries().audit_reader()
        return audit.list_families(subject, limit)

    def cleanup(self, *, batch_size: int = 500) -> int:
        return self.sessions.cleanup(batch_size=batch_size)

    # -- sessions a user sees (README "Sessions") -----------------------------------------
    def _user_sessions(self) -> UserSessions:
        from tokensmith.sessions import UserSessions

        return UserSessions(self._audit or self._registries().audit_reader(), self.sessions)

    def user_sessions(self, subject: str, *, current: str | None = None) -> list[UserSession]:
        """``subject``'s live sessions, newest first; ``current`` (the ``sid`` of the
        caller's access token) is flagged."""
        return self._user_sessions().list(subject, self.clock.now(), current)

    def end_user_session(self, subject: str, session_id: str) -> bool:
        """End one of ``subject``'s own sessions; ``False`` for anyone else's or none."""
        return self._user_sessions().end(subject, session_id, self.clock.now())

    def end_other_user_sessions(self, subject: str, *, current: str | None) -> int:
        """End all of ``subject``'s sessions but ``current``; how many ended."""
        return self._user_sessions().end_others(subject, current, self.clock.now())

    # -- back-channel logout (README "Back-channel logout") -------------------------------
    @property
    def logout_outbox(self) -> LogoutOutbox | None:
        """The store's outbox of logout tokens to deliver, if it keeps one."""
        from tokensmith.logout.outbox import KeepsLogouts

        store = self.sessions.store
        return store.logout_outbox() if isinstance(store, KeepsLogouts) else None

    def deliver_logouts(self, *, limit: int = LOGOUT_BATCH) -> DeliveryReport:
        """Deliver up to ``limit`` due back-channel logouts now (``tokensmith serve`` does
        this every ``backchannel_poll_interval``; scripts may call it themselves)."""
        from tokensmith.logout.delivery import DeliveryReport, LogoutDelivery

        if self._logout_delivery is None:
            outbox = self.logout_outbox
            if outbox is None:
                return DeliveryReport()
            self._logout_delivery = LogoutDelivery(
                outbox,
                client=self.clients.get_client,
                signer=self.keys.signer,
                settings=self.settings,
                clock=self.clock,
            )
        return self._logout_delivery.run_once(limit)

    # -- health ---------------------------------------------------------------------------
    def ready(self) -> list[str]:
        """Why this instance cannot serve yet: ``"database"`` when a cheap read of the refresh
        store fails, ``"signing_key"`` without an active signing key. Empty when ready
        (``GET /readyz``, README "Operations"). Only short codes: a probe's answer is public."""
        reasons: list[str] = []
        try:
            self.sessions.store.find_token(_PROBE_HASH)
        except Exception as exc:  # any store failure means "not ready", never a 500
            logger.warning("readiness: the refresh store is unreachable (%s)", type(exc).__name__)
            reasons.append("database")
        try:
            self.keys.signer()
        except Exception as exc:  # the key store may be a database or an HSM as well
            logger.warning("readiness: no active signing key (%s)", type(exc).__name__)
            reasons.append("signing_key")
        return reasons

    # -- keys -----------------------------------------------------------------------------
    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return self.keys.jwks()

    def revocations_since(self, cursor: int, limit: int) -> tuple[list[LogEntry], int, bool]:
        """The revocation log after ``cursor`` (``GET /revocations``): entries that still
        matter, the next cursor, whether more follow."""
        return self.sessions.revocation_entries(cursor, limit)

    def follow_revocations(self) -> None:
        """Hear other instances' revocations as they commit, in a thread (PostgreSQL
        ``LISTEN``; SQLite: a poll every ``revocation_poll_interval``). ``tokensmith
        serve`` does this; without it a check reads the log when that interval passed."""
        self.sessions.follow_revocations()

    def stop_following_revocations(self) -> None:
        if self._refresh is not None:
            self._refresh.stop_following()

    def revoke_key(self, kid: str) -> KeyRecord:
        """Emergency: stop publishing ``kid`` at once (if it was signing, the next key
        signs) and log it, so remote verifiers refuse its tokens and fetch the JWKS again
        (``GET /revocations``)."""
        removed = self.keys.revoke(kid)
        self.announce_key_revoked(kid)
        return removed

    def announce_key_revoked(self, kid: str) -> None:
        """Log the revocation of ``kid`` for remote verifiers (``revoke_key`` does; raises
        if the database cannot take it, when the key itself is revoked already)."""
        self.sessions.log_revocation(KID, kid)

    def rotate_keys(self) -> KeyRecord:
        """Operator's rotation: the pending key signs from now on (docs/contract.md "Keys")."""
        return self.keys.rotate()

    def keys_in_database(self) -> bool:
        """Whether this deployment's database holds the SQL key store's signing keys while
        the file store is configured (``TOKENSMITH_KEY_STORE`` left unset): advice for an
        operator who sees no active key."""
        if self.settings.key_store != "file" or _in_memory(self.settings):
            return False
        from tokensmith.store.sql.keys import database_holds_keys

        return database_holds_keys(self.settings.database_url)

    def reencrypt_keys(self, new_passphrase: str | None, progress: Callable[[str], None]) -> int:
        """Re-encrypt the key store's private keys and refresh secret at the current KDF
        cost (SECURITY B6), under ``new_passphrase`` when given; ``progress`` hears of each
        one. Returns how many were rewritten."""
        reencrypt = getattr(self.keys.store, "reencrypt", None)
        if reencrypt is None:
            raise ConfigError("this key store cannot re-encrypt its keys")
        count: int = reencrypt(new_passphrase, progress)
        return count


_NO_CLAIMS = SessionClaims({}, {})
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


def _in_memory(settings: Settings) -> bool:
    return settings.database_url.startswith(MEMORY_URL)


def _open_store(settings: Settings) -> RefreshStore:
    if _in_memory(settings):
        from tokensmith.store.memory import MemoryStore

        return MemoryStore()
    from tokensmith.store.sql import open_store

    return open_store(settings)


def _file_key_store(settings: Settings) -> KeyStore:
    return FileKeyStore(settings.keys_dir, settings.key_passphrase)


def _sql_key_store(settings: Settings) -> KeyStore:
    from tokensmith.store.sql import open_key_store

    return open_key_store(settings)


def _pkcs11_key_store(settings: Settings) -> KeyStore:
    from tokensmith.keys.pkcs11 import open_pkcs11_key_store

    return open_pkcs11_key_store(settings)


# settings.KEY_STORES names each: a directory on this machine, the shared database (which
# ``setup()`` migrates before the first key is made), or an HSM token (keys/pkcs11.py).
_KEY_STORES: dict[str, Callable[[Settings], KeyStore]] = {
    "file": _file_key_store,
    "sql": _sql_key_store,
    "pkcs11": _pkcs11_key_store,
}


def _key_store(settings: Settings) -> KeyStore:
    return _KEY_STORES[settings.key_store](settings)


def _epoch(value: datetime | float, name: str) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidRequest(f"{name} must be a timezone-aware datetime or epoch seconds")
        return int(value.timestamp())
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise InvalidRequest(f"{name} must be a timezone-aware datetime or epoch seconds")
    return int(value)


def _audiences(audience: str | Sequence[str] | None, default: str) -> tuple[str, ...]:
    if audience is None:
        return (default,)
    values = (audience,) if isinstance(audience, str) else tuple(audience)
    if not values or not all(isinstance(a, str) and a for a in values):
        raise InvalidRequest("audience must be a non-empty string or list of strings")
    return values


def _checked_jkt(jkt: str | None) -> str | None:
    """An RFC 7638 SHA-256 thumbprint: 43 base64url characters."""
    if jkt is not None and (len(jkt) != 43 or not jkt.isascii() or not _B64URL.fullmatch(jkt)):
        raise InvalidRequest("dpop_jkt must be an RFC 7638 SHA-256 thumbprint (base64url)")
    return jkt
