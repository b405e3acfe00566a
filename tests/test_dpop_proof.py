"""``tokensmith.dpop.ProofVerifier`` on its own (RFC 9449 §4.3; SECURITY D1, D3): the
RFC's own example, proofs by joserfc and jwcrypto for every allowed algorithm, each hostile
case of the issue, and hypothesis over header, claims and key: every failure is
``InvalidDPoPProof``, never another exception."""

from __future__ import annotations

import base64
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jws as jwcrypto_jws

from tokensmith.clock import ManualClock
from tokensmith.dpop import Nonces, ProofVerifier, ReplayCache, normalize_htu
from tokensmith.errors import InvalidDPoPProof, UseDPoPNonce
from tokensmith.keys.algorithms import ALGORITHMS
from tokensmith.keys.jwk import public_members, thumbprint

from .dpop_helpers import DPoPKey, ath
from .test_hostile_tokens import json_value

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "rfc9449_4.1.json").read_text())
HTU = "https://server.example.com/token"
NOW = 1_800_000_000


def verifier(now: float = NOW, **options: Any) -> ProofVerifier:
    return ProofVerifier(clock=ManualClock(now), **options)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def test_the_rfc_9449_example_proof_verifies_with_its_jkt() -> None:
    v = verifier(FIXTURE["iat"] + 1)
    proof = v.verify(FIXTURE["proof"], htm=FIXTURE["htm"], htu=FIXTURE["htu"])
    assert proof.jkt == FIXTURE["jkt"]  # RFC 9449 §6.1
    assert proof.jti == FIXTURE["jti"]


@pytest.mark.parametrize("alg", ["ES256", "ES384", "Ed25519", "PS256", "RS256"])
def test_proofs_made_with_joserfc_verify(alg: str) -> None:
    key = DPoPKey(alg)
    proof = verifier().verify(key.proof(HTU, iat=NOW), htm="POST", htu=HTU)
    assert proof.jkt == key.jkt  # joserfc's RFC 7638 thumbprint


@pytest.mark.parametrize(
    ("alg", "kty", "options"),
    [
        ("ES256", "EC", {"crv": "P-256"}),
        ("ES384", "EC", {"crv": "P-384"}),
        ("EdDSA", "OKP", {"crv": "Ed25519"}),
        ("PS256", "RSA", {"size": 2048}),
        ("RS256", "RSA", {"size": 2048}),
    ],
)
def test_proofs_made_with_jwcrypto_verify(alg: str, kty: str, options: dict[str, Any]) -> None:
    key = jwcrypto_jwk.JWK.generate(kty=kty, **options)
    public = json.loads(key.export_public())
    claims = {"jti": "jwcrypto-1", "htm": "GET", "htu": HTU + "?x=1", "iat": NOW, "ath": ath("t")}
    token = jwcrypto_jws.JWS(json.dumps(claims))
    token.add_signature(key, alg, protected={"typ": "dpop+jwt", "alg": alg, "jwk": public})
    proof = verifier().verify(token.serialize(compact=True), htm="GET", htu=HTU, access_token="t")
    assert proof.jkt == key.thumbprint()


# -- hostile proofs ---------------------------------------------------------------------------
def _sign(header: dict[str, Any], claims: Any, private: ec.EllipticCurvePrivateKey) -> str:
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(claims).encode() if not isinstance(claims, bytes) else claims)
    signing_input = f"{head}.{body}".encode()
    return f"{head}.{body}.{b64(ALGORITHMS['ES256'].jws.sign(signing_input, private))}"


PRIVATE = ec.generate_private_key(ec.SECP256R1())
PUBLIC_JWK = public_members(PRIVATE.public_key())
GOOD_HEADER = {"typ": "dpop+jwt", "alg": "ES256", "jwk": PUBLIC_JWK}
GOOD_CLAIMS = {"jti": "j1", "htm": "POST", "htu": HTU, "iat": NOW}


def refused(proof: object, **request: Any) -> None:
    call = {"htm": "POST", "htu": HTU, **request}
    with pytest.raises(InvalidDPoPProof):
        verifier().verify(proof, **call)  # type: ignore[arg-type]


def test_a_well_formed_proof_of_the_hostile_series_verifies() -> None:
    verifier().verify(_sign(GOOD_HEADER, GOOD_CLAIMS, PRIVATE), htm="POST", htu=HTU)


@pytest.mark.parametrize(
    ("name", "header", "claims", "request_"),
    [
        ("wrong htm", {}, {"htm": "GET"}, {}),
        ("wrong htu", {}, {"htu": "https://server.example.com/other"}, {}),
        ("htu of another host", {}, {"htu": "https://evil.example.com/token"}, {}),
        ("htu of another scheme", {}, {"htu": "http://server.example.com/token"}, {}),
        ("wrong ath", {}, {"ath": ath("another token")}, {"access_token": "the token"}),
        ("missing ath", {}, {}, {"access_token": "the token"}),
        ("stale iat", {}, {"iat": NOW - 61}, {}),
        ("future iat", {}, {"iat": NOW + 6}, {}),
        ("iat as a string", {}, {"iat": str(NOW)}, {}),
        ("iat as a boolean", {}, {"iat": True}, {}),
        ("no jti", {}, {"jti": None}, {}),
        ("jti too long", {}, {"jti": "j" * 257}, {}),
        ("typ JWT", {"typ": "JWT"}, {}, {}),
        ("no typ", {"typ": None}, {}, {}),
        ("alg none", {"alg": "none"}, {}, {}),
        ("alg HS256", {"alg": "HS256"}, {}, {}),
        ("alg of another key type", {"alg": "RS256"}, {}, {}),
        ("alg ES384 for a P-256 key", {"alg": "ES384"}, {}, {}),
        ("private jwk", {"jwk": {**PUBLIC_JWK, "d": b64(b"\1" * 32)}}, {}, {}),
        ("symmetric jwk", {"jwk": {"kty": "oct", "k": b64(b"secret")}}, {}, {}),
        ("no jwk", {"jwk": None}, {}, {}),
        ("crit header", {"crit": ["exp"]}, {}, {}),
    ],
)
def test_each_hostile_proof_is_refused(
    name: str, header: dict[str, Any], claims: dict[str, Any], request_: dict[str, Any]
) -> None:
    head = {k: v for k, v in {**GOOD_HEADER, **header}.items() if v is not None}
    body = {k: v for k, v in {**GOOD_CLAIMS, **claims}.items() if v is not None}
    refused(_sign(head, body, PRIVATE), **request_)


def test_a_proof_signed_by_another_key_than_its_jwk_is_refused() -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    refused(_sign(GOOD_HEADER, GOOD_CLAIMS, other))


def test_a_replayed_jti_is_refused() -> None:
    v = verifier()
    proof = _sign(GOOD_HEADER, GOOD_CLAIMS, PRIVATE)
    v.verify(proof, htm="POST", htu=HTU)
    with pytest.raises(InvalidDPoPProof, match="replayed"):
        v.verify(proof, htm="POST", htu=HTU)
    # The same jti by another key is that key's own (replay keys are scoped by jkt).
    other = ec.generate_private_key(ec.SECP256R1())
    header = {**GOOD_HEADER, "jwk": public_members(other.public_key())}
    v.verify(_sign(header, GOOD_CLAIMS, other), htm="POST", htu=HTU)


def test_a_full_replay_memory_refuses_the_keys_that_filled_it_not_the_others() -> None:
    """SECURITY D1 (finding 8 of the last attack): a flood by one key fills the memory
    for that key only; a key that holds few entries still gets in, up to twice the bound;
    the next generation admits the flooding key again. Replays stay refused throughout."""
    memory = ReplayCache(60.0, max_entries=8, light_key=2)
    for i in range(8):
        memory.remember("flooder", f"j{i}", NOW)
    with pytest.raises(InvalidDPoPProof, match="too many"):
        memory.remember("flooder", "j8", NOW)
    memory.remember("victim", "a", NOW)
    memory.remember("victim", "b", NOW)
    with pytest.raises(InvalidDPoPProof, match="too many"):
        memory.remember("victim", "c", NOW)  # no longer a light key
    for i in range(6):
        memory.remember(f"light{i}", "x", NOW)
    with pytest.raises(InvalidDPoPProof, match="too many"):
        memory.remember("newcomer", "x", NOW)  # twice the bound: nobody gets in
    assert len(memory) == 16
    memory.remember("flooder", "j8", NOW + 60)  # a new generation
    with pytest.raises(InvalidDPoPProof, match="replayed"):
        memory.remember("flooder", "j0", NOW + 60)  # the old one is still remembered


def test_a_proof_by_another_key_than_the_tokens_is_refused_before_its_signature() -> None:
    """A resource passes the token's ``cnf.jkt``: a proof by another key is refused
    without a signature check and leaves nothing in the replay memory, so one stolen
    token cannot be used to fill it with proofs by keys of the thief's making."""
    v = verifier()
    other = ec.generate_private_key(ec.SECP256R1())
    header = {**GOOD_HEADER, "jwk": public_members(other.public_key())}
    forged = _sign(header, GOOD_CLAIMS, PRIVATE)  # a bad signature too
    with pytest.raises(InvalidDPoPProof, match="not by the token's key"):
        v.verify(forged, htm="POST", htu=HTU, jkt=thumbprint(PUBLIC_JWK))
    assert len(v.replays) == 0
    good = _sign(GOOD_HEADER, GOOD_CLAIMS, PRIVATE)
    v.verify(good, htm="POST", htu=HTU, jkt=thumbprint(PUBLIC_JWK))
    assert len(v.replays) == 1


def test_a_proof_left_to_the_ledger_is_not_remembered_here() -> None:
    v = verifier()
    proof = _sign(GOOD_HEADER, GOOD_CLAIMS, PRIVATE)
    v.verify(proof, htm="POST", htu=HTU, remember=False)
    assert len(v.replays) == 0
    v.verify(proof, htm="POST", htu=HTU)  # the caller's ledger is where a replay shows


@pytest.mark.parametrize(
    "proofs",
    [None, [], ["a", "b"], "", "a.b", "a.b.c.d", "é.b.c", "x" * 9000, 42, [42]],
    ids=[
        "none",
        "empty",
        "two",
        "blank",
        "two parts",
        "four parts",
        "non-ascii",
        "huge",
        "int",
        "[int]",
    ],
)
def test_malformed_proof_headers_are_refused(proofs: object) -> None:
    refused(proofs)


def test_htu_is_compared_normalised_without_query_or_fragment() -> None:
    claims = {**GOOD_CLAIMS, "htu": "HTTPS://Server.Example.COM:443/token?a=1#frag"}
    verifier().verify(_sign(GOOD_HEADER, claims, PRIVATE), htm="POST", htu=HTU)
    assert normalize_htu("http://h:80/a%2fb") == "http://h/a%2Fb"
    assert normalize_htu("http://h:8080") == "http://h:8080/"
    assert normalize_htu("ftp://h/") is None
    assert normalize_htu("https://user@h/") is None


def test_nonces_are_required_when_on_and_any_instance_accepts_them() -> None:
    clock = ManualClock(NOW)
    nonces = Nonces(b"k" * 32, clock=clock)
    v = ProofVerifier(clock=clock, nonces=nonces)
    with pytest.raises(UseDPoPNonce) as asked:
        v.verify(_sign(GOOD_HEADER, GOOD_CLAIMS, PRIVATE), htm="POST", htu=HTU)
    nonce = asked.value.nonce
    # Another instance with the same key accepts it, now and during the next step.
    other_clock = ManualClock(NOW + 299)
    other = ProofVerifier(clock=other_clock, nonces=Nonces(b"k" * 32, clock=other_clock))
    claims = {**GOOD_CLAIMS, "nonce": nonce, "iat": NOW + 299}
    other.verify(_sign(GOOD_HEADER, claims, PRIVATE), htm="POST", htu=HTU)
    stranger = ProofVerifier(clock=clock, nonces=Nonces(b"x" * 32, clock=clock))
    with pytest.raises(UseDPoPNonce):
        stranger.verify(
            _sign(GOOD_HEADER, {**GOOD_CLAIMS, "nonce": nonce}, PRIVATE), htm="POST", htu=HTU
        )
    clock.advance(2 * 300)
    with pytest.raises(UseDPoPNonce):
        claims = {**GOOD_CLAIMS, "jti": "late", "nonce": nonce, "iat": NOW + 600}
        v.verify(_sign(GOOD_HEADER, claims, PRIVATE), htm="POST", htu=HTU)


def test_the_algorithm_allow_list_is_enforced() -> None:
    v = verifier(algorithms=("ES384",))
    with pytest.raises(InvalidDPoPProof, match="algorithm not allowed"):
        v.verify(_sign(GOOD_HEADER, GOOD_CLAIMS, PRIVATE), htm="POST", htu=HTU)


# -- hypothesis over header, claims and key ----------------------------------------------------
JSON = json_value
MEMBER = st.sampled_from(["kty", "crv", "x", "y", "n", "e", "d", "alg", "use", "key_ops", "k"])
JWKS = st.one_of(
    st.just(PUBLIC_JWK),
    st.dictionaries(
        MEMBER, JSON | st.sampled_from(["EC", "P-256", "OKP", "RSA", "oct"]), max_size=6
    ),
    st.builds(lambda extra: {**PUBLIC_JWK, **extra}, st.dictionaries(MEMBER, JSON, max_size=2)),
)
HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "typ": st.sampled_from(["dpop+jwt", "JWT", "DPOP+JWT"]) | JSON,
        "alg": st.sampled_from(["ES256", "ES384", "EdDSA", "RS256", "HS256", "none"]) | JSON,
        "jwk": JWKS | JSON,
        "crit": JSON,
        "kid": JSON,
    },
)
CLAIMS = st.fixed_dictionaries(
    {},
    optional={
        "jti": st.text(max_size=300) | JSON,
        "htm": st.sampled_from(["POST", "GET", "post"]) | JSON,
        "htu": st.sampled_from([HTU, HTU + "?q", "https://x/", "http://[::1/", "https://h:99999/"])
        | JSON,
        "iat": st.sampled_from([NOW, NOW - 60, NOW + 5, NOW - 61, math.inf, -math.inf]) | JSON,
        "ath": JSON,
        "nonce": JSON,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=HEADERS, claims=CLAIMS | JSON, token=st.none() | st.text(max_size=20))
def test_any_header_claims_and_key_are_a_proof_or_invalid_dpop_proof(
    header: dict[str, Any], claims: Any, token: str | None
) -> None:
    try:
        body = json.dumps(claims, allow_nan=True)
    except (ValueError, OverflowError):
        return
    head = b64(json.dumps(header, allow_nan=True).encode())
    payload = b64(body.encode())
    signing_input = f"{head}.{payload}".encode()
    proof = f"{head}.{payload}.{b64(ALGORITHMS['ES256'].jws.sign(signing_input, PRIVATE))}"
    try:
        verified = verifier().verify(proof, htm="POST", htu=HTU, access_token=token)
    except InvalidDPoPProof:
        return
    # Accepted: then every check of RFC 9449 §4.3 held.
    assert header.get("typ") == "dpop+jwt" and header.get("alg") == "ES256"
    assert isinstance(claims, dict) and claims.get("htm") == "POST"
    assert normalize_htu(claims["htu"]) == HTU
    assert NOW - 60 <= claims["iat"] <= NOW + 5
    assert token is None or claims.get("ath") == ath(token)
    assert verified.jkt == b64(
        hashlib.sha256(
            json.dumps(
                {k: PUBLIC_JWK[k] for k in ("crv", "kty", "x", "y")},
                separators=(",", ":"),
                sort_keys=True,
            ).encode()
        ).digest()
    )


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_any_text_is_a_refused_proof(text: str) -> None:
    refused(text)
