"""A DPoP client for the tests, made with joserfc (another JOSE implementation than ours,
so every proof the server accepts is also an interop check; RFC 9449 §4)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

JoseKey = ECKey | OKPKey | RSAKey


class DPoPKey:
    """One client key pair and the proofs it signs."""

    def __init__(self, alg: str = "ES256", key: JoseKey | None = None) -> None:
        self.alg = alg
        self.key = key or _generate(alg)
        self.jwk: dict[str, Any] = dict(self.key.as_dict(private=False))
        self.jkt: str = self.key.thumbprint()

    def proof(
        self,
        htu: str,
        *,
        htm: str = "POST",
        iat: float,
        access_token: str | None = None,
        nonce: str | None = None,
        **extra: Any,
    ) -> str:
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(12),
            "htm": htm,
            "htu": htu,
            "iat": int(iat),
        }
        if access_token is not None:
            claims["ath"] = ath(access_token)
        if nonce is not None:
            claims["nonce"] = nonce
        claims.update(extra)
        header = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.jwk}
        return jwt.encode(header, claims, self.key, algorithms=[self.alg])


def ath(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _generate(alg: str) -> JoseKey:
    if alg == "ES256":
        return ECKey.generate_key("P-256")
    if alg == "ES384":
        return ECKey.generate_key("P-384")
    if alg in ("EdDSA", "Ed25519"):
        return OKPKey.generate_key("Ed25519")
    return RSAKey.generate_key(2048)


def claims_of(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (the tests' look at what was minted)."""
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
