"""One exception tree. Each class carries its OAuth error code and HTTP status.

Only ``tokensmith.http`` and ``tokensmith.integrations`` turn these into responses;
``description`` is safe to show a
client, anything more detailed belongs in logs (fosite's hint/debug split).
"""

from __future__ import annotations


class TokensmithError(Exception):
    """Root of every error tokensmith raises on purpose."""

    error: str = "server_error"
    status_code: int = 500

    def __init__(self, description: str = "") -> None:
        super().__init__(description or self.error)
        self.description = description or self.error


class ConfigError(TokensmithError):
    """Settings, environment or key store are unusable."""


class StoreError(TokensmithError):
    """The token store failed in a way a retry will not fix; the transaction was rolled
    back (a retryable conflict is ``TemporarilyUnavailable`` instead)."""


class KeyStoreError(TokensmithError):
    """The key store could not be read or written."""


class InvalidKey(TokensmithError):
    """A foreign JWK or JWK Set is unusable for verification (RFC 7517, RFC 8725 §3.1)."""


class InvalidToken(TokensmithError):
    """A JWT failed verification (RFC 6750 §3.1 ``invalid_token``)."""

    error = "invalid_token"
    status_code = 401


class TokenExpired(InvalidToken):
    """The JWT's ``exp`` has passed (beyond the allowed leeway)."""


class InvalidRequest(TokensmithError):
    """RFC 6749 §5.2 ``invalid_request``."""

    error = "invalid_request"
    status_code = 400


class InvalidGrant(TokensmithError):
    """RFC 6749 §5.2: the refresh token is unknown, expired, revoked or not this client's."""

    error = "invalid_grant"
    status_code = 400


class RefreshTokenReused(InvalidGrant):
    """A rotated refresh token came back after the grace window; its family is revoked."""


class InvalidClient(TokensmithError):
    """RFC 6749 §5.2: client authentication failed."""

    error = "invalid_client"
    status_code = 401


class InvalidScope(TokensmithError):
    """RFC 6749 §5.2: the requested scope is wider than the grant."""

    error = "invalid_scope"
    status_code = 400


class InvalidDPoPProof(TokensmithError):
    """RFC 9449 §5 and §7.1 ``invalid_dpop_proof``: a DPoP proof is missing where one is
    required, malformed, or fails a check of §4.3."""

    error = "invalid_dpop_proof"
    status_code = 400


class UseDPoPNonce(TokensmithError):
    """RFC 9449 §8 and §9 ``use_dpop_nonce``: the proof must carry ``nonce``, the server's
    current one, sent back in the ``DPoP-Nonce`` response header."""

    error = "use_dpop_nonce"
    status_code = 400

    def __init__(self, description: str, nonce: str) -> None:
        super().__init__(description)
        self.nonce = nonce


class TemporarilyUnavailable(TokensmithError):
    """A retryable conflict (e.g. a PostgreSQL serialization failure); never counted as reuse."""

    error = "temporarily_unavailable"
    status_code = 503


class CommitInDoubt(TemporarilyUnavailable):
    """The connection died after ``COMMIT`` was sent: the unit of work may or may not have
    committed (README "High availability"). The caller that knows what its unit wrote reads
    it back to find out; anyone else answers it as retryable."""


def one_line(exc: Exception) -> str:
    """``exc`` as one line of command output, never a traceback (docs/contract.md "CLI"):
    a database never migrated says what to run; a configuration error is the operator's,
    not a server fault, so it carries no OAuth code; a tokensmith error shows its code;
    anything else (a database that is down, a driver error) its type and the first line of
    its message, since drivers append hints and URLs."""
    if _missing_tables(exc):
        return "the database has no tokensmith tables: run `tokensmith db upgrade`"
    if isinstance(exc, ConfigError):
        return exc.description
    if isinstance(exc, TokensmithError):
        return f"{exc.error}: {exc.description}"
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first[:300]}"


def _missing_tables(exc: BaseException | None) -> bool:
    """Whether ``exc`` or an error behind it is SQLite's ``no such table`` or PostgreSQL's
    ``undefined_table`` (SQLSTATE 42P01): a database that was never migrated."""
    seen = 0
    while exc is not None and seen < 16:
        if "no such table" in str(exc) or getattr(exc, "sqlstate", None) == "42P01":
            return True
        exc = exc.__cause__ or exc.__context__ or getattr(exc, "orig", None)
        seen += 1
    return False
