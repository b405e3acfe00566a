"""DPoP proof verification, every check of RFC 9449 §4.3 (SECURITY D1, D3).

A proof is a JWS whose header carries the public key that signed it. The checks, each an
``InvalidDPoPProof`` when it fails: one proof, at most ``max_bytes`` long, before anything
is decoded (check 1); compact JWS of three base64url segments with JSON header and claims
(2, 3); ``typ`` ``dpop+jwt`` (4); ``alg`` from the allow-list and bound to the ``jwk``'s key
type, never ``none`` or an HMAC (5); ``jwk`` public only (7); the signature by that key
(6); ``htm`` and ``htu`` of this request (8, 9); ``nonce`` when the server asks for one
(10); ``iat`` inside ``[now - iat_window, now + iat_skew]`` (11); ``ath`` the hash of the
access token presented with it (12); ``jti`` not seen before in this process (§11.1), or
in the store's shared ledger where the caller records it there instead (the token
endpoint, ``/sessions``; :mod:`tokensmith.dpop.replay`).

Clients reuse one key, so one header: a header segment once verified is kept with its
parsed key and RFC 7638 thumbprint, and the next proof only parses its claims.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

from tokensmith.clock import Clock, SystemClock
from tokensmith.dpop.htu import same_htu
from tokensmith.dpop.nonce import Nonces
from tokensmith.dpop.replay import ReplayCache, replay_key
from tokensmith.errors import InvalidDPoPProof, InvalidToken, UseDPoPNonce
from tokensmith.keys.algorithms import ALGORITHMS, AlgorithmSpec, PublicKey
from tokensmith.keys.jwk import thumbprint
from tokensmith.keys.jwkset import load_public_key
from tokensmith.settings import DPOP_ALGS, Settings
from tokensmith.tokens.jws import (
    b64encode,
    check_signature,
    checked_alg,
    compact_segments,
    parse_json_object,
)

# The defaults are the settings' (HMAC and "none" can never be listed: not in ALGORITHMS).
DEFAULT_DPOP_ALGS = DPOP_ALGS
DEFAULT_IAT_WINDOW = Settings.dpop_iat_window
DEFAULT_IAT_SKEW = Settings.dpop_iat_skew
# A proof with a 4096-bit RSA key is ~1.8 KB; nobody needs 8 KB (SECURITY V6 spirit).
MAX_PROOF_BYTES = 8192
MAX_JTI_LENGTH = 256
_HEADER_CACHE_SIZE = 1024


# A named tuple: built on every request, in a fraction of a frozen dataclass's time.
class Proof(NamedTuple):
    """A verified proof: the thumbprint of its key (``cnf.jkt``, RFC 9449 §6.1) and what
    a shared replay check needs (``replay_key`` and ``iat``)."""

    jkt: str
    jti: str
    iat: float

    @property
    def replay_key(self) -> bytes:
        return replay_key(self.jkt, self.jti)


@dataclass(frozen=True, slots=True)
class _Header:
    spec: AlgorithmSpec
    key: PublicKey
    jkt: str


@lru_cache(maxsize=1024)
def access_token_hash(access_token: str) -> str:
    """RFC 9449 §4.2 ``ath``: base64url of the SHA-256 of the token's ASCII bytes; kept
    for the tokens in use, since a client sends one token with many proofs."""
    return b64encode(hashlib.sha256(access_token.encode("ascii", "replace")).digest())


def algorithms_of(names: Iterable[str]) -> frozenset[str]:
    """The allow-list as JWS ``alg`` values: asymmetric algorithms we verify only."""
    allowed = set()
    for name in names:
        if name not in ALGORITHMS:
            raise ValueError(f"DPoP algorithm {name!r} is not one of {', '.join(ALGORITHMS)}")
        allowed.add(name)
    if "EdDSA" in allowed:
        allowed.add("Ed25519")  # RFC 9864's fully specified name for the same
    return frozenset(allowed)


class ProofVerifier:
    """Verifies DPoP proofs for one deployment: its algorithms, ``iat`` window, optional
    nonces and in-process replay memory. Thread-safe."""

    def __init__(
        self,
        *,
        algorithms: Iterable[str] = DEFAULT_DPOP_ALGS,
        iat_window: float = DEFAULT_IAT_WINDOW,
        iat_skew: float = DEFAULT_IAT_SKEW,
        clock: Clock | None = None,
        nonces: Nonces | None = None,
        max_bytes: int = MAX_PROOF_BYTES,
    ) -> None:
        self.algorithms = tuple(algorithms)
        self._allowed = algorithms_of(self.algorithms)
        self._window = float(iat_window)
        self._skew = float(iat_skew)
        self._clock: Clock = clock or SystemClock()
        self.nonces = nonces
        self._max_bytes = max_bytes
        self._headers: dict[str, _Header] = {}
        self._headers_lock = threading.Lock()
        # A proof is acceptable until iat + window, and iat may be up to skew ahead.
        self.replays = ReplayCache(self._window + self._skew)

    def verify(
        self,
        proofs: str | Sequence[str] | None,
        *,
        htm: str,
        htu: str,
        access_token: str | None = None,
        jkt: str | None = None,
        remember: bool = True,
    ) -> Proof:
        """The verified proof of a request with method ``htm`` to URI ``htu`` (as the
        client addressed it), ``access_token`` when one is presented with it. ``proofs``
        is the ``DPoP`` header: its one value, or all of its values. ``jkt`` is the key
        the proof must be by (the token's ``cnf.jkt``, RFC 9449 §7.1), checked before the
        signature, so a proof by another key costs no verification and is never
        remembered. ``remember=False`` leaves the ``jti`` to the caller, who records it in
        the store's shared ledger instead (:func:`tokensmith.dpop.replay.remember_proof`),
        so nobody can fill this process's memory with proofs of requests that failed."""
        proof = _single(proofs)
        try:
            return self._verify(proof, htm, htu, access_token, jkt, remember)
        except (InvalidDPoPProof, UseDPoPNonce):
            raise
        except Exception:
            # Whatever a hostile proof trips over is a refused proof, never a server error.
            raise InvalidDPoPProof("malformed DPoP proof") from None

    def _verify(
        self,
        proof: str,
        htm: str,
        htu: str,
        access_token: str | None,
        jkt: str | None,
        remember: bool,
    ) -> Proof:
        try:
            raw, header_seg, payload_seg, sig_seg = compact_segments(proof, self._max_bytes)
            header = self._headers.get(header_seg) or self._header(header_seg)
            if jkt is not None and header.jkt != jkt:
                raise InvalidDPoPProof("the DPoP proof is not by the token's key")
            check_signature(header.spec, header.key, raw, header_seg, payload_seg, sig_seg)
            claims = parse_json_object(payload_seg)
        except InvalidToken as exc:
            raise InvalidDPoPProof(f"DPoP proof: {exc.description}") from None
        now = self._clock.now()
        iat = self._checked_claims(claims, htm, htu, access_token, now)
        jti: str = claims["jti"]
        if remember:
            self.replays.remember(header.jkt, jti, now)
        return Proof(header.jkt, jti, iat)

    def _header(self, segment: str) -> _Header:
        header = parse_json_object(segment)
        if header.get("typ") != "dpop+jwt":
            raise InvalidDPoPProof("DPoP proof typ must be dpop+jwt")
        alg = checked_alg(header, self._allowed)
        jwk = header.get("jwk")
        if not isinstance(jwk, dict):
            raise InvalidDPoPProof("DPoP proof has no jwk")
        try:
            bound, key = load_public_key(jwk, alg)
        except Exception:
            raise InvalidDPoPProof("DPoP proof jwk is not a usable public key") from None
        spec = ALGORITHMS[bound]
        if alg not in (bound, *(("Ed25519",) if bound == "EdDSA" else ())):
            raise InvalidDPoPProof("DPoP proof algorithm does not match its key")
        parsed = _Header(spec, key, thumbprint(jwk))
        with self._headers_lock:
            if len(self._headers) >= _HEADER_CACHE_SIZE:
                self._headers.clear()  # bounded: a flood of keys only costs the cache
            self._headers[segment] = parsed
        return parsed

    def _checked_claims(
        self,
        claims: dict[str, Any],
        htm: str,
        htu: str,
        access_token: str | None,
        now: float,
    ) -> float:
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
            raise InvalidDPoPProof("DPoP proof jti missing or too long")
        if claims.get("htm") != htm:
            raise InvalidDPoPProof("DPoP proof htm does not match the request method")
        claimed = claims.get("htu")
        if not isinstance(claimed, str) or not same_htu(claimed, htu):
            raise InvalidDPoPProof("DPoP proof htu does not match the request URI")
        iat = claims.get("iat")
        if isinstance(iat, bool) or not isinstance(iat, int | float) or not math.isfinite(iat):
            raise InvalidDPoPProof("DPoP proof iat missing")
        if not now - self._window <= iat <= now + self._skew:
            raise InvalidDPoPProof("DPoP proof iat outside the accepted window")
        if access_token is not None and claims.get("ath") != access_token_hash(access_token):
            raise InvalidDPoPProof("DPoP proof ath does not match the access token")
        if self.nonces is not None:
            self.nonces.check(claims.get("nonce"))
        return float(iat)


def _single(proofs: str | Sequence[str] | None) -> str:
    """RFC 9449 §4.3 check 1: exactly one ``DPoP`` header, a string."""
    if isinstance(proofs, str):
        return proofs
    if not isinstance(proofs, list | tuple) or len(proofs) != 1 or not isinstance(proofs[0], str):
        raise InvalidDPoPProof("exactly one DPoP proof is required")
    return proofs[0]
