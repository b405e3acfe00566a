"""Minting access tokens (RFC 9068) and ID tokens (OpenID Connect Core §2)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any

from tokensmith.keys.algorithms import spec_for
from tokensmith.keys.signer import Signer
from tokensmith.tokens.jws import _encode_json, b64encode, header_segment, sign_compact, sign_json

ACCESS_TOKEN_TYP = "at+jwt"  # RFC 9068 §2.1
ID_TOKEN_TYP = "JWT"


def new_jti() -> str:
    """A random token id: 128 bits, never a sequence (docs/contract.md "Refresh store
    semantics")."""
    return secrets.token_urlsafe(16)


def at_hash(access_token: str, alg: str) -> str:
    """OIDC Core §3.1.3.6: left half of the hash named by ``alg`` of the ASCII token
    (SHA-256 for ES256/RS256/PS256, SHA-384 for ES384, SHA-512 for EdDSA/Ed25519)."""
    digest = spec_for(alg).at_hash(access_token.encode("ascii")).digest()
    return b64encode(digest[: len(digest) // 2])


@dataclass(frozen=True)
class AccessTokenClaims:
    subject: str
    client_id: str
    audience: str | Sequence[str]
    scope: str
    issued_at: int
    expires_at: int
    jti: str
    session_id: str | None = None
    # Application claims (tokensmith.tokens.claims), written after the protocol claims.
    extra: Mapping[str, Any] | None = None
    # RFC 9449 §6.1: the thumbprint of the DPoP key the token is bound to (``cnf.jkt``).
    jkt: str | None = None


def _extra_members(extra: Mapping[str, Any] | None) -> str:
    """``extra``'s members as JSON text to append inside the payload object ("" if none)."""
    return "," + _encode_json(extra)[1:-1] if extra else ""


# The payload of mint_access_token's dict below, in its member order, as json.dumps with
# separators=(",", ":") and ensure_ascii=False writes it; the last three %s are "" or the
# sid member, "" or the cnf member, and "" or the application claims' members.
_ACCESS_JSON = (
    '{"iss":%s,"sub":%s,"aud":%s,"exp":%s,"iat":%s,"nbf":%s,"jti":%s,"client_id":%s,"scope":%s'
    "%s%s%s}"
)


def _access_token_json(issuer: str, c: AccessTokenClaims) -> str | None:
    """The JSON text for the common shape (exact ``str`` and ``int`` fields, one audience),
    built with the C escaper ``json`` itself uses for strings (``encode_basestring``) and
    ``int`` formatting: 2-3 µs less than a JSONEncoder per token. Any other shape: None."""
    sid = c.session_id
    if (
        type(issuer) is not str
        or type(c.subject) is not str
        or type(c.audience) is not str
        or type(c.expires_at) is not int
        or type(c.issued_at) is not int
        or type(c.jti) is not str
        or type(c.client_id) is not str
        or type(c.scope) is not str
        or (sid is not None and type(sid) is not str)
        or (c.jkt is not None and type(c.jkt) is not str)
    ):
        return None
    return _ACCESS_JSON % (
        encode_basestring(issuer),
        encode_basestring(c.subject),
        encode_basestring(c.audience),
        c.expires_at,
        c.issued_at,
        c.issued_at,
        encode_basestring(c.jti),
        encode_basestring(c.client_id),
        encode_basestring(c.scope),
        "" if sid is None else ',"sid":' + encode_basestring(sid),
        "" if c.jkt is None else ',"cnf":{"jkt":' + encode_basestring(c.jkt) + "}",
        _extra_members(c.extra),
    )


def mint_access_token(signer: Signer, issuer: str, c: AccessTokenClaims) -> str:
    body = _access_token_json(issuer, c)
    if body is not None:
        return sign_json(signer, header_segment(signer.alg, signer.kid, ACCESS_TOKEN_TYP), body)
    aud: Any = c.audience if isinstance(c.audience, str) else list(c.audience)
    payload: dict[str, Any] = {
        "iss": issuer,
        "sub": c.subject,
        "aud": aud,
        "exp": c.expires_at,
        "iat": c.issued_at,
        "nbf": c.issued_at,
        "jti": c.jti,
        "client_id": c.client_id,
        "scope": c.scope,
    }
    if c.session_id is not None:
        payload["sid"] = c.session_id
    if c.jkt is not None:
        payload["cnf"] = {"jkt": c.jkt}
    if c.extra:
        payload.update(c.extra)
    return sign_compact(signer, header_segment(signer.alg, signer.kid, ACCESS_TOKEN_TYP), payload)


@dataclass(frozen=True)
class IdTokenClaims:
    subject: str
    client_id: str
    issued_at: int
    expires_at: int
    auth_time: int
    session_id: str | None = None
    nonce: str | None = None
    amr: Sequence[str] | None = None
    acr: str | None = None
    access_token: str | None = None
    extra: Mapping[str, Any] | None = None


def _id_token_payload(issuer: str, c: IdTokenClaims, token_hash: str | None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "iss": issuer,
        "sub": c.subject,
        "aud": c.client_id,
        "exp": c.expires_at,
        "iat": c.issued_at,
        "auth_time": c.auth_time,
        "azp": c.client_id,
    }
    if c.nonce is not None:
        payload["nonce"] = c.nonce
    if c.amr is not None:
        payload["amr"] = list(c.amr)
    if c.acr is not None:
        payload["acr"] = c.acr
    if token_hash is not None:
        payload["at_hash"] = token_hash
    if c.session_id is not None:
        payload["sid"] = c.session_id
    if c.extra:
        payload.update(c.extra)
    return payload


def _id_token_json(issuer: str, c: IdTokenClaims, token_hash: str | None) -> str | None:
    """The JSON text of :func:`_id_token_payload` for exact ``str``/``int`` fields, written
    like :func:`_access_token_json`; any other shape: None."""
    optional = (c.nonce, c.acr, token_hash, c.session_id)
    if (
        type(issuer) is not str
        or type(c.subject) is not str
        or type(c.client_id) is not str
        or type(c.expires_at) is not int
        or type(c.issued_at) is not int
        or type(c.auth_time) is not int
        or any(v is not None and type(v) is not str for v in optional)
        or (c.amr is not None and any(type(v) is not str for v in c.amr))
    ):
        return None
    client = encode_basestring(c.client_id)
    parts = [
        f'{{"iss":{encode_basestring(issuer)},"sub":{encode_basestring(c.subject)},'
        f'"aud":{client},"exp":{c.expires_at},"iat":{c.issued_at},'
        f'"auth_time":{c.auth_time},"azp":{client}'
    ]
    if c.nonce is not None:
        parts.append(f',"nonce":{encode_basestring(c.nonce)}')
    if c.amr is not None:
        parts.append(',"amr":[' + ",".join(map(encode_basestring, c.amr)) + "]")
    if c.acr is not None:
        parts.append(f',"acr":{encode_basestring(c.acr)}')
    if token_hash is not None:
        parts.append(f',"at_hash":{encode_basestring(token_hash)}')
    if c.session_id is not None:
        parts.append(f',"sid":{encode_basestring(c.session_id)}')
    parts.append(_extra_members(c.extra))
    parts.append("}")
    return "".join(parts)


def mint_id_token(signer: Signer, issuer: str, c: IdTokenClaims) -> str:
    """OIDC Core §2: ``aud`` is the client; ``azp`` names it too (§2, when one audience it
    is optional but harmless and lets RPs check it uniformly)."""
    token_hash = None if c.access_token is None else at_hash(c.access_token, signer.alg)
    header = header_segment(signer.alg, signer.kid, ID_TOKEN_TYP)
    body = _id_token_json(issuer, c, token_hash)
    if body is not None:
        return sign_json(signer, header, body)
    return sign_compact(signer, header, _id_token_payload(issuer, c, token_hash))
