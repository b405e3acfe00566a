"""Helpers for the JOSE security suites: real keys, and tokens forged byte by byte.

``forge`` signs whatever header and payload bytes it is given with a real private key, so a
test can build exactly the hostile token it describes (duplicate members, odd encodings,
wrong claim types) and still get past the signature check to the rule under test.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from tokensmith.clock import ManualClock
from tokensmith.events import EventBus
from tokensmith.keys import ALGORITHMS, FileKeyStore, KeyManager
from tokensmith.keys.algorithms import PrivateKey
from tokensmith.settings import Settings
from tokensmith.tokens.verify import AccessTokenVerifier

ISSUER = "https://as.example.com"
NOW = 1_800_000_000
ALGS = ("ES256", "ES384", "EdDSA", "RS256", "PS256")
_DROP = object()
DROP: Any = _DROP  # pass as a claim or header value to leave it out


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(value: Any) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def make_keys(directory: Path, clock: ManualClock, alg: str = "ES256") -> KeyManager:
    settings = Settings(issuer=ISSUER, keys_dir=str(directory), signing_alg=alg)
    km = KeyManager(FileKeyStore(directory), settings, clock, EventBus())
    km.ensure_active()
    return km


def active_private_key(km: KeyManager) -> tuple[str, PrivateKey]:
    kid = km.signer().kid
    return kid, km.store.load_private_key(kid)


def access_payload(**overrides: Any) -> dict[str, Any]:
    """A well-formed RFC 9068 payload issued at NOW for audience "api"."""
    payload: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": "api",
        "exp": NOW + 300,
        "iat": NOW,
        "nbf": NOW,
        "jti": "jti-1",
        "client_id": "spa",
        "scope": "openid",
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not _DROP}


def forge(key: PrivateKey, alg: str, header: bytes | str | dict[str, Any], payload: Any) -> str:
    """Sign raw ``header``/``payload`` (bytes are used as is, str as UTF-8, else JSON)."""
    head = _raw(header)
    body = _raw(payload)
    signing_input = f"{b64(head)}.{b64(body)}"
    signature = ALGORITHMS[alg].jws.sign(signing_input.encode("ascii"), key)
    return f"{signing_input}.{b64(signature)}"


def _raw(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def forge_access(km: KeyManager, *, header: dict[str, Any] | None = None, **claims: Any) -> str:
    """An access token signed by ``km``'s active key, with header/claims overridden."""
    kid, key = active_private_key(km)
    head: dict[str, Any] = {"alg": km.alg, "kid": kid, "typ": "at+jwt"}
    head.update(header or {})
    return forge(
        key, km.alg, {k: v for k, v in head.items() if v is not _DROP}, access_payload(**claims)
    )


def verifier(km: Any, clock: ManualClock, **kwargs: Any) -> AccessTokenVerifier:
    return AccessTokenVerifier(km, issuer=ISSUER, clock=clock, **kwargs)
