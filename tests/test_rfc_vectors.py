"""RFC example values, byte for byte (SECURITY K2).

Fixtures under ``tests/fixtures/`` are named by RFC and section and hold the values as the
RFCs print them (RFC 7515's examples come as byte arrays there; these are their base64url).

Adaptation: the RFC 7515 A.2/A.3 and RFC 8037 A.4 tokens carry no ``kid``, and
``CompactVerifier`` refuses a kid-less token before any key lookup (a key without a kid is
unusable: SECURITY V9, H5 "kid-absent"). So each RFC token is checked in two steps:

1. its exact signing input and signature verify under the RFC key loaded by our
   ``load_jwk``, through ``VerificationKey.spec.jws.verify`` — the very call
   ``CompactVerifier`` makes once it has found the key — and the kid-less token itself is
   shown to be refused by ``CompactVerifier`` without the lookup ever being asked;
2. the same key signs (with our ``LocalSigner``) the same payload under a header that adds
   the RFC 7638 thumbprint as ``kid``, and that token passes ``CompactVerifier`` with a
   lookup holding only the RFC key. For the deterministic algorithms (RS256, EdDSA) our
   signature over the RFC's own signing input equals the RFC's signature byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tokensmith.errors import InvalidToken
from tokensmith.keys import LocalSigner, VerificationKey
from tokensmith.keys.algorithms import PrivateKey
from tokensmith.keys.jwk import public_jwk, public_members, thumbprint
from tokensmith.keys.jwkset import load_jwk
from tokensmith.tokens.jws import CompactVerifier, b64decode, b64encode
from tokensmith.tokens.verify import DEFAULT_ALGS

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text("utf-8"))
    return data


def _int(value: str) -> int:
    return int.from_bytes(b64decode(value), "big")


def _rsa_private(jwk: dict[str, str]) -> rsa.RSAPrivateKey:
    public = rsa.RSAPublicNumbers(_int(jwk["e"]), _int(jwk["n"]))
    names = ("p", "q", "d", "dp", "dq", "qi")
    p, q, d, dp, dq, qi = (_int(jwk[n]) for n in names)
    return rsa.RSAPrivateNumbers(p, q, d, dp, dq, qi, public).private_key()


def _ec_private(jwk: dict[str, str]) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(_int(jwk["d"]), ec.SECP256R1())


def _ed_private(jwk: dict[str, str]) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(b64decode(jwk["d"]))


class OneKey:
    """A ``KeyLookup`` holding one key under one kid."""

    def __init__(self, key: VerificationKey) -> None:
        self.key = key
        self.asked: list[str] = []

    def verification_key(self, kid: str) -> VerificationKey | None:
        self.asked.append(kid)
        return self.key if kid == self.key.kid else None


def _public_only(jwk: dict[str, str], alg: str, kid: str) -> dict[str, str]:
    private = {"d", "p", "q", "dp", "dq", "qi"}
    return {**{k: v for k, v in jwk.items() if k not in private}, "alg": alg, "kid": kid}


# -- RFC 7638 §3.1 ---------------------------------------------------------------------------


def test_rfc_7638_section_3_1_thumbprint_of_the_example_rsa_key() -> None:
    vector = fixture("rfc7638_3.1.json")
    assert thumbprint(vector["jwk"]) == vector["thumbprint"]
    key = load_jwk(vector["jwk"])
    assert thumbprint(public_members(key.public_key)) == vector["thumbprint"]
    assert public_jwk(key.public_key, "RS256")["kid"] == vector["thumbprint"]


# -- RFC 8037 Appendix A ---------------------------------------------------------------------


def test_rfc_8037_a1_private_key_yields_the_a2_public_key() -> None:
    vector = fixture("rfc8037_a.json")
    private = _ed_private(vector["A.1"])
    assert public_members(private.public_key()) == vector["A.2"]


def test_rfc_8037_a3_thumbprint() -> None:
    vector = fixture("rfc8037_a.json")
    assert thumbprint(vector["A.2"]) == vector["A.3"]["thumbprint"]
    signer = LocalSigner.from_key(_ed_private(vector["A.1"]), "EdDSA")
    assert signer.kid == vector["A.3"]["thumbprint"]  # our kid is the RFC 7638 thumbprint


def test_rfc_8037_a4_signature_is_reproduced_byte_for_byte_by_our_signer() -> None:
    vector = fixture("rfc8037_a.json")["A.4"]
    head, body, signature = vector["jws"].split(".")
    assert json.loads(b64decode(head)) == vector["protected"]
    assert b64decode(body) == vector["payload"].encode()
    signer = LocalSigner.from_key(_ed_private(fixture("rfc8037_a.json")["A.1"]), "EdDSA")
    assert b64encode(signer.sign(f"{head}.{body}".encode())) == signature


def test_rfc_8037_a4_token_verifies_under_the_a2_public_key() -> None:
    data = fixture("rfc8037_a.json")
    _verifies_at_jws_level(
        data["A.4"]["jws"], _public_only(data["A.2"], "EdDSA", data["A.3"]["thumbprint"])
    )
    _verifies_through_compact_verifier(
        _ed_private(data["A.1"]),
        "EdDSA",
        data["A.4"]["jws"],
        _public_only(data["A.2"], "EdDSA", data["A.3"]["thumbprint"]),
    )


# -- RFC 7515 Appendix A.2 (RS256) and A.3 (ES256) -------------------------------------------


def test_rfc_7515_a2_rs256_signature_is_reproduced_byte_for_byte_by_our_signer() -> None:
    vector = fixture("rfc7515_a.2.json")
    head, body, signature = vector["jws"].split(".")
    signer = LocalSigner.from_key(_rsa_private(vector["jwk"]), "RS256")
    assert b64encode(signer.sign(f"{head}.{body}".encode())) == signature


@pytest.mark.parametrize(
    ("name", "alg", "private"),
    [("rfc7515_a.2.json", "RS256", _rsa_private), ("rfc7515_a.3.json", "ES256", _ec_private)],
    ids=["RFC 7515 A.2 RS256", "RFC 7515 A.3 ES256"],
)
def test_rfc_7515_example_verifies_at_the_jws_level(name: str, alg: str, private: Any) -> None:
    vector = fixture(name)
    kid = thumbprint({**vector["jwk"]})
    public = _public_only(vector["jwk"], alg, kid)
    _verifies_at_jws_level(vector["jws"], public)
    _verifies_through_compact_verifier(private(vector["jwk"]), alg, vector["jws"], public)


def test_rfc_7515_a3_private_key_matches_its_public_key() -> None:
    jwk = fixture("rfc7515_a.3.json")["jwk"]
    members = public_members(_ec_private(jwk).public_key())
    assert (members["x"], members["y"]) == (jwk["x"], jwk["y"])


# -- the two steps of the adaptation ---------------------------------------------------------


def _verifies_at_jws_level(token: str, public: dict[str, str]) -> None:
    key = load_jwk(public)
    head, body, signature = token.split(".")
    assert key.spec.jws.verify(f"{head}.{body}".encode(), key.public_key, b64decode(signature))
    tampered = f"{head}.{body}x".encode()
    assert not key.spec.jws.verify(tampered, key.public_key, b64decode(signature))
    # The RFC token itself has no kid: refused before the lookup is consulted.
    lookup = OneKey(key)
    with pytest.raises(InvalidToken, match="kid"):
        CompactVerifier(lookup, max_bytes=8192, allowed_algs=DEFAULT_ALGS).verify(token)
    assert lookup.asked == []


def _verifies_through_compact_verifier(
    private: PrivateKey, alg: str, rfc_token: str, public: dict[str, str]
) -> None:
    key = load_jwk(public)
    _, body, _ = rfc_token.split(".")
    head = b64encode(json.dumps({"alg": alg, "kid": key.kid}).encode())
    signature = LocalSigner.from_key(private, alg).sign(f"{head}.{body}".encode())
    token = f"{head}.{body}.{b64encode(signature)}"
    lookup = OneKey(key)
    header, payload_segment = CompactVerifier(
        lookup, max_bytes=8192, allowed_algs=DEFAULT_ALGS
    ).verify(token)
    assert header == {"alg": alg, "kid": key.kid}
    assert payload_segment == body
    assert lookup.asked == [key.kid]
