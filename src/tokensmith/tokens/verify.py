"""Strict verification of access tokens (RFC 9068 §4) and ID tokens (OIDC Core §3.1.3.7).

Signature first (``CompactVerifier``), then every claim in one pass with an injected clock
and a bounded leeway. Every failure is an ``InvalidToken`` (``TokenExpired`` for ``exp``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from tokensmith.clock import Clock
from tokensmith.errors import ConfigError, InvalidToken, TokenExpired
from tokensmith.settings import MAX_LEEWAY, SUPPORTED_ALGS, Settings
from tokensmith.tokens.jws import CompactVerifier, KeyLookup, parse_json_object

# RFC 9068 §4: "application/at+jwt" or its short form, compared case-insensitively.
_ACCESS_TYPS = frozenset({"at+jwt", "application/at+jwt"})
_ID_TYPS = frozenset({"jwt", "application/jwt"})
_ACCESS_REQUIRED = ("iss", "sub", "aud", "exp", "iat", "jti", "client_id")
_ID_REQUIRED = ("iss", "sub", "aud", "exp", "iat")
DEFAULT_ALGS = frozenset({*SUPPORTED_ALGS, "Ed25519"})

Claims = dict[str, Any]


class _ClaimsVerifier:
    """Shared core of the two token kinds: header ``typ`` and the registered claims."""

    _typs: frozenset[str]
    _required: tuple[str, ...]
    _required_set: frozenset[str]
    _typ_required: bool

    def __init__(
        self,
        keys: KeyLookup,
        *,
        issuer: str,
        clock: Clock,
        leeway: float = Settings.leeway,
        max_lifetime: int = Settings.max_token_lifetime,
        max_bytes: int = Settings.max_token_bytes,
        algorithms: Iterable[str] = DEFAULT_ALGS,
    ) -> None:
        if isinstance(leeway, bool) or not isinstance(leeway, int | float):
            raise ConfigError("leeway must be a number of seconds")
        if not math.isfinite(leeway):
            raise ConfigError("leeway must be a finite number")
        if not 0 <= leeway <= MAX_LEEWAY:
            raise ConfigError(f"leeway must be between 0 and {MAX_LEEWAY} s")
        algs = frozenset(algorithms)
        unknown = algs - DEFAULT_ALGS
        if unknown:
            # HMAC or "none" can never be allowed: there is no verifier for them here.
            raise ConfigError(f"algorithms not supported for verification: {sorted(unknown)}")
        self._jws = CompactVerifier(keys, max_bytes=max_bytes, allowed_algs=algs)
        self._issuer = issuer
        self._clock = clock
        self._leeway = float(leeway)
        self._max_lifetime = max_lifetime

    def _verify(self, token: object, audience: str | None) -> Claims:
        header, payload_seg = self._jws.verify(token)
        typ = header.get("typ")
        if typ is None:
            if self._typ_required:
                raise InvalidToken("missing typ")
        elif typ.lower() not in self._typs:
            raise InvalidToken("wrong token type")
        claims = parse_json_object(payload_seg)
        if not claims.keys() >= self._required_set:  # one C-level test; the loop names the miss
            for name in self._required:
                if name not in claims:
                    raise InvalidToken(f"missing claim {name!r}")
        now = self._clock.now()
        leeway = self._leeway
        # A JSON integer is the common NumericDate: exact-int values skip _numeric's checks,
        # which they would pass.
        exp = claims["exp"]
        if type(exp) is not int:
            exp = _numeric(claims, "exp")
        iat = claims["iat"]
        if type(iat) is not int:
            iat = _numeric(claims, "iat")
        if "nbf" in claims:
            nbf = claims["nbf"]
            if type(nbf) is not int:
                nbf = _numeric(claims, "nbf")
            if nbf > now + leeway:
                raise InvalidToken("token not yet valid")
        if iat > now + leeway:
            raise InvalidToken("token issued in the future")
        if exp - iat > self._max_lifetime or exp < iat:
            raise InvalidToken("token lifetime out of bounds")
        if now >= exp + leeway:
            raise TokenExpired("token expired")
        if claims["iss"] != self._issuer:  # exact string compare; a list never equals a str
            raise InvalidToken("wrong issuer")
        if not isinstance(claims["sub"], str) or not claims["sub"]:
            raise InvalidToken("sub must be a non-empty string")
        if audience is not None and not _audience_ok(claims["aud"], audience):
            raise InvalidToken("wrong audience")
        return claims


class AccessTokenVerifier(_ClaimsVerifier):
    """RFC 9068 §4. ``typ`` must be ``at+jwt``: an ID token is never an access token."""

    _typs = _ACCESS_TYPS
    _required = _ACCESS_REQUIRED
    _required_set = frozenset(_ACCESS_REQUIRED)
    _typ_required = True

    def verify(self, token: object, *, audience: str | None) -> Claims:
        """``audience=None`` skips only the audience check; pass the resource's identifier."""
        claims = self._verify(token, audience)
        jti, client_id = claims["jti"], claims["client_id"]
        if not isinstance(jti, str) or not jti:
            raise InvalidToken("jti must be a non-empty string")
        if not isinstance(client_id, str) or not client_id:
            raise InvalidToken("client_id must be a non-empty string")
        scope = claims.get("scope")
        if scope is not None and not isinstance(scope, str):
            raise InvalidToken("scope must be a string")
        return claims


class IdTokenVerifier(_ClaimsVerifier):
    """OIDC Core §3.1.3.7 for a relying party: ``aud`` contains the client, ``azp`` (when
    present or when several audiences) is the client, ``nonce`` matches when expected."""

    _typs = _ID_TYPS
    _required = _ID_REQUIRED
    _required_set = frozenset(_ID_REQUIRED)
    _typ_required = False

    def verify(self, token: object, *, client_id: str, nonce: str | None = None) -> Claims:
        claims = self._verify(token, client_id)
        aud = claims["aud"]
        azp = claims.get("azp")
        if (azp is not None or (isinstance(aud, list) and len(aud) > 1)) and azp != client_id:
            raise InvalidToken("wrong authorized party")
        if nonce is not None and claims.get("nonce") != nonce:
            raise InvalidToken("nonce mismatch")
        if "auth_time" in claims:
            _numeric(claims, "auth_time")
        return claims


def _numeric(claims: Claims, name: str) -> float:
    """RFC 7519 §2 NumericDate: a JSON number. Strings, booleans and non-finite values are
    type errors (PyJWT accepts ``"9999999999"``; we do not)."""
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"{name} must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidToken(f"{name} must be finite")
    return value


def _audience_ok(aud: object, expected: str) -> bool:
    if isinstance(aud, str):
        return aud == expected
    if isinstance(aud, list) and aud and all(isinstance(a, str) for a in aud):
        return expected in aud
    return False
