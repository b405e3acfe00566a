"""A strict, lean JWS Compact Serialization (RFC 7515 §7.1) for signed JWTs.

Only the compact form with three non-empty base64url segments is accepted: no JSON
serialization, no JWE, no unencoded payload (RFC 7797), no padding, no ``crit``.
Header-supplied keys (``jwk``, ``jku``, ``x5u``, ``x5c``) are never read: the key comes from
our own key set by ``kid``, and the algorithm must be the one that key is bound to.
"""

from __future__ import annotations

import binascii
import functools
import json
from collections.abc import Callable
from typing import Any, Protocol

from tokensmith.errors import InvalidToken
from tokensmith.keys.algorithms import AlgorithmSpec, PublicKey
from tokensmith.keys.lifecycle import VerificationKey
from tokensmith.keys.signer import Signer

_B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64_VALUE = {c: i for i, c in enumerate(_B64URL_ALPHABET)}
_B64URL_BYTES = _B64URL_ALPHABET.encode("ascii")
# base64url <-> base64 by bytes.translate: what base64.urlsafe_b64{en,de}code do, minus the
# Python-level wrappers around binascii (about 1 µs a call).
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
_PADDING = ("", "", "==", "=")
# Header members that would change how the payload or signature is read. We implement
# none of them, so their presence means we cannot process the token as intended.
_UNSUPPORTED_HEADERS = ("crit", "b64", "zip", "enc")
_HEADER_CACHE_SIZE = 256
# RFC 9864: "Ed25519" is the fully specified name for EdDSA over that curve.
_ALG_NAMES = {"EdDSA": ("EdDSA", "Ed25519")}


class KeyLookup(Protocol):
    def verification_key(self, kid: str) -> VerificationKey | None: ...


def _b64encode(data: bytes) -> bytes:
    return binascii.b2a_base64(data, newline=False).rstrip(b"=").translate(_TO_URLSAFE)


def b64encode(data: bytes) -> str:
    return _b64encode(data).decode("ascii")


def b64decode(segment: str) -> bytes:
    """Decode unpadded base64url, refusing non-canonical forms (non-zero trailing bits),
    so one value has exactly one spelling (Wycheproof JWS tcIds 367 and 370)."""
    rem = len(segment) % 4
    if rem == 1:
        raise InvalidToken("malformed base64url segment")
    if rem:
        mask = 0x0F if rem == 2 else 0x03
        last = _B64_VALUE.get(segment[-1])
        if last is None:
            raise InvalidToken("malformed base64url segment")
        if last & mask:
            raise InvalidToken("non-canonical base64url segment")
    try:
        # Non-strict, like base64.urlsafe_b64decode; callers that need the strict alphabet
        # (CompactVerifier) check it before decoding.
        return binascii.a2b_base64(
            (segment + _PADDING[rem]).encode("ascii").translate(_FROM_URLSAFE)
        )
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed base64url segment") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        # RFC 7515 §4 lets a parser reject duplicates; doing so defeats first-wins/last-wins
        # disagreements between us and a gateway in front of us (RFC 8725 §3.7 spirit).
        raise InvalidToken("duplicate member name")
    return obj


def _no_constant(name: str) -> Any:
    raise InvalidToken(f"non-JSON number {name}")


_decoder = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
# The C scanner JSONDecoder.raw_decode calls (an instance attribute typeshed does not declare).
_scan_once: Callable[[str, int], tuple[Any, int]] = _decoder.scan_once  # type: ignore[attr-defined]
# allow_nan=False: a NaN or Infinity claim would mint a token no strict verifier accepts.
_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def parse_json_object(segment: str) -> dict[str, Any]:
    """base64url → strict UTF-8 (RFC 8725 §3.7) → JSON object, any failure InvalidToken."""
    raw = b64decode(segment)
    try:
        text = raw.decode("utf-8")
        # What JSONDecoder.decode does, minus its whitespace regexes when the text starts
        # with "{" and nothing follows the object; any other text takes the full path.
        value, end = _scan_once(text, 0) if text[:1] == "{" else (None, -1)
        if end != len(text):
            value = _decoder.decode(text)
    except InvalidToken:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError, StopIteration):
        raise InvalidToken("segment is not a UTF-8 JSON object") from None
    if not isinstance(value, dict):
        raise InvalidToken("segment is not a JSON object")
    return value


def compact_segments(token: str, max_bytes: int) -> tuple[bytes, str, str, str]:
    """The ASCII bytes and the three non-empty segments of a compact JWS, or
    ``InvalidToken``; the byte cap comes before any decoding (SECURITY V6)."""
    if len(token) > max_bytes:
        raise InvalidToken("token too large")
    # Strict alphabet in one C pass: only base64url characters and exactly two dots
    # (isascii() is O(1) and makes the encode below total).
    raw = token.encode("ascii") if token.isascii() else b""
    if raw.translate(None, _B64URL_BYTES) != b"..":
        raise InvalidToken("not a JWS compact serialization")
    header_seg, payload_seg, sig_seg = token.split(".")
    if not header_seg or not payload_seg or not sig_seg:
        raise InvalidToken("not a JWS compact serialization")
    return raw, header_seg, payload_seg, sig_seg


def check_signature(
    spec: AlgorithmSpec, key: PublicKey, raw: bytes, header_seg: str, payload_seg: str, sig_seg: str
) -> None:
    """``InvalidToken`` unless ``sig_seg`` is ``key``'s signature of the signing input."""
    signature = b64decode(sig_seg)
    expected = spec.signature_length
    if expected is not None and len(signature) != expected:
        raise InvalidToken("signature has the wrong length")
    signing_input = raw[: len(header_seg) + 1 + len(payload_seg)]
    if not spec.jws.verify(signing_input, key, signature):
        raise InvalidToken("signature verification failed")


def checked_alg(header: dict[str, Any], allowed: frozenset[str]) -> str:
    """The header's ``alg`` if it is allowed and no header member we do not implement is
    present, else ``InvalidToken`` (RFC 8725 §3.1, RFC 7515 §4.1.11)."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in allowed:
        raise InvalidToken("algorithm not allowed")
    for name in _UNSUPPORTED_HEADERS:
        if name in header:
            raise InvalidToken(f"unsupported header parameter {name!r}")
    return alg


class CompactVerifier:
    """Checks structure, header and signature; the claims are the caller's job."""

    def __init__(self, keys: KeyLookup, *, max_bytes: int, allowed_algs: frozenset[str]) -> None:
        self._keys = keys
        self._max_bytes = max_bytes
        self._allowed = allowed_algs
        self._headers: dict[str, dict[str, Any]] = {}

    def verify(self, token: object) -> tuple[dict[str, Any], str]:
        """Return the protected header and the payload segment of a verified token."""
        if isinstance(token, bytes):
            if len(token) > self._max_bytes:
                raise InvalidToken("token too large")
            try:
                token = token.decode("ascii")
            except UnicodeDecodeError:
                raise InvalidToken("token is not ASCII") from None
        if not isinstance(token, str):
            raise InvalidToken("token must be a string")
        raw, header_seg, payload_seg, sig_seg = compact_segments(token, self._max_bytes)
        header = self._header(header_seg)
        key = self._key_for(header)
        check_signature(key.spec, key.public_key, raw, header_seg, payload_seg, sig_seg)
        return header, payload_seg

    def _header(self, segment: str) -> dict[str, Any]:
        cached = self._headers.get(segment)
        if cached is not None:
            return cached
        header = parse_json_object(segment)
        checked_alg(header, self._allowed)
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("kid must be a string")
        typ = header.get("typ")
        if typ is not None and not isinstance(typ, str):
            raise InvalidToken("typ must be a string")
        if len(self._headers) >= _HEADER_CACHE_SIZE:
            self._headers.clear()  # bounded: a flood of distinct headers only costs the cache
        self._headers[segment] = header
        return header

    def _key_for(self, header: dict[str, Any]) -> VerificationKey:
        kid = header.get("kid")
        key = self._keys.verification_key(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("unknown kid")
        # RFC 8725 §3.1: the key decides the algorithm; the header may only agree with it.
        if header["alg"] not in _ALG_NAMES.get(key.alg, (key.alg,)):
            raise InvalidToken("algorithm does not match the key")
        return key


def sign_compact(signer: Signer, header_segment: str, payload: dict[str, Any]) -> str:
    """Serialize ``payload`` under a pre-encoded header segment and sign it."""
    return sign_json(signer, header_segment, _encode_json(payload))


def sign_json(signer: Signer, header_segment: str, body: str) -> str:
    """Sign ``body``, the payload's JSON text exactly as ``sign_compact`` would write it."""
    signing_input = header_segment.encode("ascii") + b"." + _b64encode(body.encode("utf-8"))
    return (signing_input + b"." + _b64encode(signer.sign(signing_input))).decode("ascii")


@functools.lru_cache(maxsize=64)
def header_segment(alg: str, kid: str, typ: str) -> str:
    """The encoded protected header; cached because it is the same for every token a key
    signs."""
    return b64encode(
        json.dumps({"alg": alg, "kid": kid, "typ": typ}, separators=(",", ":")).encode("ascii")
    )
