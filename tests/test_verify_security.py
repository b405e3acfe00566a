"""SECURITY §1, V1-V8: hostile tokens against ``AccessTokenVerifier`` / ``IdTokenVerifier``.

Each test names the advisory it guards and fails if the behaviour is removed. Hostile
tokens are forged byte by byte and signed with the real key (``tests.jose_helpers.forge``),
so the rule under test, not the signature, is what rejects them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from tests.jose_helpers import (
    DROP,
    ISSUER,
    NOW,
    access_payload,
    active_private_key,
    b64,
    b64json,
    forge,
    forge_access,
    make_keys,
    verifier,
)
from tokensmith.clock import ManualClock
from tokensmith.errors import ConfigError, InvalidToken, TokenExpired
from tokensmith.keys import KeyManager, VerificationKey
from tokensmith.keys.jwk import public_jwk
from tokensmith.keys.jwkset import JwkSet
from tokensmith.tokens import jws as jws_module
from tokensmith.tokens.mint import IdTokenClaims, mint_id_token
from tokensmith.tokens.verify import AccessTokenVerifier, IdTokenVerifier


@pytest.fixture(scope="module")
def es256(tmp_path_factory: pytest.TempPathFactory) -> KeyManager:
    return make_keys(tmp_path_factory.mktemp("es256"), ManualClock(NOW), "ES256")


@pytest.fixture(scope="module")
def rs256(tmp_path_factory: pytest.TempPathFactory) -> KeyManager:
    return make_keys(tmp_path_factory.mktemp("rs256"), ManualClock(NOW), "RS256")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


def rejects(verify: AccessTokenVerifier, token: object) -> InvalidToken:
    with pytest.raises(InvalidToken) as caught:
        verify.verify(token, audience="api")
    return caught.value


def test_a_well_formed_token_is_accepted_so_every_rejection_below_means_something(
    es256: KeyManager, clock: ManualClock
) -> None:
    assert verifier(es256, clock).verify(forge_access(es256), audience="api")["sub"] == "alice"


# -- V1 Algorithm bound to the key (CVE-2015-9235, CVE-2022-23540; RFC 8725 §3.1) ---------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", ["", "c2ln"], ids=["empty signature", "junk signature"])
def test_alg_none_in_any_spelling_is_rejected(
    alg: str, signature: str, es256: KeyManager, clock: ManualClock
) -> None:
    kid = es256.signer().kid
    token = f"{b64json({'alg': alg, 'kid': kid, 'typ': 'at+jwt'})}.{b64json(access_payload())}"
    rejects(verifier(es256, clock), f"{token}.{signature}")


def _public_key_forms(km: KeyManager) -> dict[str, bytes]:
    public = km.signer().public_key()
    return {
        "PEM": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "PEM with trailing whitespace (CVE-2026-102268)": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        + b"  \n\n",
        "DER": public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "JWK JSON (CVE-2026-48526)": json.dumps(public_jwk(public, km.alg)).encode(),
        "SSH (CVE-2022-29217)": public.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ),
    }


FORMS = [
    "PEM",
    "PEM with trailing whitespace (CVE-2026-102268)",
    "DER",
    "JWK JSON (CVE-2026-48526)",
    "SSH (CVE-2022-29217)",
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("keys", ["es256", "rs256"])
@pytest.mark.parametrize("hs", ["HS256", "HS384", "HS512"])
def test_hmac_signed_with_the_public_key_as_secret_is_rejected(
    form: str, keys: str, hs: str, request: pytest.FixtureRequest, clock: ManualClock
) -> None:
    km: KeyManager = request.getfixturevalue(keys)
    secret = _public_key_forms(km)[form]
    head = b64json({"alg": hs, "kid": km.signer().kid, "typ": "at+jwt"})
    signing_input = f"{head}.{b64json(access_payload())}"
    digest = getattr(hashlib, "sha" + hs[2:])
    mac = hmac.new(secret, signing_input.encode(), digest).digest()
    rejects(verifier(km, clock), f"{signing_input}.{b64(mac)}")


def test_hmac_can_never_be_put_on_the_allow_list(es256: KeyManager, clock: ManualClock) -> None:
    for algs in (["HS256"], ["ES256", "HS256"], ["none"]):
        with pytest.raises(ConfigError):
            AccessTokenVerifier(es256, issuer=ISSUER, clock=clock, algorithms=algs)


def test_an_eddsa_token_against_an_es256_key_is_rejected(
    es256: KeyManager, clock: ManualClock
) -> None:
    attacker = ed25519.Ed25519PrivateKey.generate()
    header = {"alg": "EdDSA", "kid": es256.signer().kid, "typ": "at+jwt"}
    rejects(verifier(es256, clock), forge(attacker, "EdDSA", header, access_payload()))


def test_an_es256_token_against_a_key_bound_to_rs256_is_rejected(
    rs256: KeyManager, clock: ManualClock
) -> None:
    attacker = ec.generate_private_key(ec.SECP256R1())
    header = {"alg": "ES256", "kid": rs256.signer().kid, "typ": "at+jwt"}
    rejects(verifier(rs256, clock), forge(attacker, "ES256", header, access_payload()))


def test_an_ec_key_published_with_alg_rs256_never_verifies_es256(clock: ManualClock) -> None:
    # Wycheproof JWS tcId 16/31 family: the JWKS entry's alg contradicts its key type.
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = {**public_jwk(key.public_key(), "ES256"), "alg": "RS256", "kid": "k1"}
    keys = JwkSet({"keys": [jwk]})
    assert keys.verification_key("k1") is None
    token = forge(key, "ES256", {"alg": "ES256", "kid": "k1", "typ": "at+jwt"}, access_payload())
    rejects(verifier(keys, clock), token)


def test_a_wrong_algorithm_is_rejected_before_any_claim_is_looked_at(
    es256: KeyManager, clock: ManualClock
) -> None:
    # The claims are expired too: the error must be about the algorithm, not TokenExpired.
    attacker = ed25519.Ed25519PrivateKey.generate()
    header = {"alg": "EdDSA", "kid": es256.signer().kid, "typ": "at+jwt"}
    token = forge(attacker, "EdDSA", header, access_payload(exp=NOW - 3600, iat=NOW - 3900))
    assert not isinstance(rejects(verifier(es256, clock), token), TokenExpired)


# -- V2 Header-supplied keys are never trusted (CVE-2018-0114, CVE-2026-48522) ------------


def test_an_embedded_jwk_signed_by_the_attackers_key_is_rejected(
    es256: KeyManager, clock: ManualClock
) -> None:
    attacker = ec.generate_private_key(ec.SECP256R1())
    attacker_jwk = public_jwk(attacker.public_key(), "ES256")
    for kid in (es256.signer().kid, attacker_jwk["kid"]):
        header = {"alg": "ES256", "kid": kid, "typ": "at+jwt", "jwk": attacker_jwk}
        rejects(verifier(es256, clock), forge(attacker, "ES256", header, access_payload()))


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Any outbound connection, URL open or read of /etc/passwd fails the test."""
    attempts: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(repr(args)[:200])
        raise AssertionError(f"verification tried to fetch something: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(urllib.request.OpenerDirector, "open", refuse)
    real_open = open

    def guarded_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if "passwd" in str(file):
            refuse(file)
        return real_open(file, *args, **kwargs)

    real_read_text = Path.read_text

    def guarded_read_text(self: Path, *args: Any, **kwargs: Any) -> str:
        if "passwd" in str(self):
            refuse(self)
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr("builtins.open", guarded_open)
    monkeypatch.setattr(Path, "read_text", guarded_read_text)
    yield attempts
    assert attempts == []


def test_the_network_guard_notices_a_fetch(no_network: list[str]) -> None:
    for fetch in (
        lambda: urllib.request.urlopen("http://127.0.0.1/jwks.json"),
        lambda: socket.create_connection(("127.0.0.1", 80)),
        lambda: open("/etc/passwd"),  # noqa: SIM115
    ):
        with pytest.raises(AssertionError):
            fetch()
    assert len(no_network) == 3
    no_network.clear()  # the guard worked; let its teardown pass


URLS = ["http://127.0.0.1/jwks.json", "file:///etc/passwd", "http://169.254.169.254/latest/"]


@pytest.mark.parametrize("member", ["jku", "x5u"])
@pytest.mark.parametrize("url", URLS)
def test_jku_and_x5u_are_never_fetched(
    member: str,
    url: str,
    es256: KeyManager,
    clock: ManualClock,
    no_network: list[str],
) -> None:
    verify = verifier(es256, clock)
    attacker = ec.generate_private_key(ec.SECP256R1())
    kid = public_jwk(attacker.public_key(), "ES256")["kid"]
    forged = forge(
        attacker, "ES256", {"alg": "ES256", "kid": kid, "typ": "at+jwt", member: url}, {}
    )
    rejects(verify, forged)
    # Signed by our key, the URL is ignored, not followed (docs/contract.md "Tokens": jku/x5u
    # ignored).
    ours = forge_access(es256, header={member: url})
    assert verify.verify(ours, audience="api")["sub"] == "alice"


class SpyKeys:
    """A ``KeyLookup`` that records every kid it is asked for."""

    def __init__(self, inner: KeyManager) -> None:
        self.inner = inner
        self.asked: list[object] = []

    def verification_key(self, kid: str) -> VerificationKey | None:
        self.asked.append(kid)
        return self.inner.verification_key(kid)


@pytest.mark.parametrize(
    "kid",
    ["' OR 1=1 --", "../../dev/null", "%s%s%n", "k" * 10_000],
    ids=["SQL-ish", "path traversal", "format string", "10 kB"],
)
def test_a_hostile_string_kid_is_a_plain_dictionary_miss(
    kid: str, es256: KeyManager, clock: ManualClock
) -> None:
    spy = SpyKeys(es256)
    _, key = active_private_key(es256)
    token = forge(key, "ES256", {"alg": "ES256", "kid": kid, "typ": "at+jwt"}, access_payload())
    verify = AccessTokenVerifier(spy, issuer=ISSUER, clock=clock, max_bytes=64 * 1024)
    rejects(verify, token)
    assert spy.asked == [kid]  # passed through untouched: a plain dictionary miss


@pytest.mark.parametrize("kid", [1, None, ["a"], {"a": 1}, True], ids=repr)
def test_a_non_string_kid_is_rejected_without_a_lookup(
    kid: object, es256: KeyManager, clock: ManualClock
) -> None:
    spy = SpyKeys(es256)
    token = forge_access(es256, header={"kid": kid})
    rejects(AccessTokenVerifier(spy, issuer=ISSUER, clock=clock), token)
    assert spy.asked == []


def test_a_missing_kid_is_rejected(es256: KeyManager, clock: ManualClock) -> None:
    rejects(verifier(es256, clock), forge_access(es256, header={"kid": DROP}))


# -- V3 Typ and kind confusion (RFC 9068 §4, RFC 8725 §3.11 and §3.12) -------------------------


def _id_token(km: KeyManager) -> str:
    claims = IdTokenClaims("alice", "api", NOW, NOW + 300, NOW, nonce="n")
    return mint_id_token(km.signer(), ISSUER, claims)


def test_an_id_token_is_never_accepted_as_an_access_token(
    es256: KeyManager, clock: ManualClock
) -> None:
    token = _id_token(es256)
    IdTokenVerifier(es256, issuer=ISSUER, clock=clock).verify(token, client_id="api", nonce="n")
    rejects(verifier(es256, clock), token)


def test_an_access_token_is_never_accepted_as_an_id_token(
    es256: KeyManager, clock: ManualClock
) -> None:
    with pytest.raises(InvalidToken):
        IdTokenVerifier(es256, issuer=ISSUER, clock=clock).verify(
            forge_access(es256), client_id="api"
        )


@pytest.mark.parametrize("typ", [DROP, "JWT", "jwt", "at+JWT+x", "", "at_jwt", 1], ids=repr)
def test_an_access_token_without_the_at_jwt_typ_is_rejected(
    typ: object, es256: KeyManager, clock: ManualClock
) -> None:
    rejects(verifier(es256, clock), forge_access(es256, header={"typ": typ}))


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"])
def test_both_rfc_9068_typ_spellings_are_accepted_case_insensitively(
    typ: str, es256: KeyManager, clock: ManualClock
) -> None:
    token = forge_access(es256, header={"typ": typ})
    assert verifier(es256, clock).verify(token, audience="api")["sub"] == "alice"


def test_a_refresh_token_presented_as_a_bearer_token_is_rejected(
    es256: KeyManager, clock: ManualClock
) -> None:
    refresh = "tsr_" + b64(bytes(range(32)))
    rejects(verifier(es256, clock), refresh)


# -- V4 Claims are strict and typed --------------------------------------------------------


@pytest.mark.parametrize("claim", ["exp", "iat", "iss", "aud", "sub", "jti", "client_id"])
def test_a_missing_required_claim_is_rejected(
    claim: str, es256: KeyManager, clock: ManualClock
) -> None:
    rejects(verifier(es256, clock), forge_access(es256, **{claim: DROP}))


@pytest.mark.parametrize(
    "iss",
    [ISSUER[:-4], ISSUER + ".evil", "https://as.evil", ["https://evil", ISSUER], [ISSUER], None],
    ids=["prefix", "suffix", "another host", "list holding ours (CVE-2026-75509)", "list", "null"],
)
def test_the_issuer_is_compared_as_one_exact_string(
    iss: object, es256: KeyManager, clock: ManualClock
) -> None:
    rejects(verifier(es256, clock), forge_access(es256, iss=iss))


def _raw_payload_token(km: KeyManager, exp_json: str) -> str:
    body = json.dumps(access_payload(exp=DROP), separators=(",", ":"))
    raw = body[:-1] + f',"exp":{exp_json}}}'
    kid, key = active_private_key(km)
    return forge(key, km.alg, {"alg": km.alg, "kid": kid, "typ": "at+jwt"}, raw.encode())


@pytest.mark.parametrize(
    "exp_json",
    ['"9999999999"', "true", "null", "NaN", "Infinity", "-Infinity", "1e400", "[1]", "{}"],
)
def test_exp_that_is_not_a_finite_json_number_is_rejected(
    exp_json: str, es256: KeyManager, clock: ManualClock
) -> None:
    # CVE-2026-25537 (jsonwebtoken), CVE-2026-44459 (Hono): PyJWT accepts the string.
    rejects(verifier(es256, clock), _raw_payload_token(es256, exp_json))


def test_a_lifetime_beyond_the_maximum_is_rejected(es256: KeyManager, clock: ManualClock) -> None:
    rejects(verifier(es256, clock), forge_access(es256, exp=2**70))
    rejects(verifier(es256, clock, max_lifetime=600), forge_access(es256, exp=NOW + 601))
    assert verifier(es256, clock, max_lifetime=600).verify(
        forge_access(es256, exp=NOW + 600), audience="api"
    )


@pytest.mark.parametrize(
    "leeway", [float("inf"), float("-inf"), float("nan"), 301, -1, "60"], ids=repr
)
def test_leeway_must_be_finite_and_at_most_300_seconds(
    leeway: Any, es256: KeyManager, clock: ManualClock
) -> None:
    # fast-jwt CVE-2026-107721; node-jsonwebtoken #1021.
    with pytest.raises(ConfigError):
        AccessTokenVerifier(es256, issuer=ISSUER, clock=clock, leeway=leeway)


@pytest.mark.parametrize(("ahead", "accepted"), [(30, True), (60, True), (61, False), (120, False)])
def test_an_issuer_clock_ahead_is_tolerated_only_within_the_leeway(
    ahead: int, accepted: bool, es256: KeyManager, clock: ManualClock
) -> None:
    # SECURITY R8: issuer 30 s ahead accepted with 60 s leeway, 120 s ahead rejected.
    t = NOW + ahead
    token = forge_access(es256, iat=t, nbf=t, exp=t + 300)
    verify = verifier(es256, clock, leeway=60)
    if accepted:
        assert verify.verify(token, audience="api")["sub"] == "alice"
    else:
        rejects(verify, token)


@pytest.mark.parametrize(("offset", "accepted"), [(-1, True), (0, False), (1, False)])
def test_exp_is_enforced_at_exactly_exp_plus_leeway(
    offset: int, accepted: bool, es256: KeyManager
) -> None:
    token = forge_access(es256)
    clock = ManualClock(NOW + 300 + 60 + offset)
    verify = verifier(es256, clock, leeway=60)
    if accepted:
        verify.verify(token, audience="api")
    else:
        with pytest.raises(TokenExpired):
            verify.verify(token, audience="api")


def test_nbf_in_the_future_beyond_the_leeway_is_rejected(
    es256: KeyManager, clock: ManualClock
) -> None:
    verify = verifier(es256, clock, leeway=60)
    assert verify.verify(forge_access(es256, nbf=NOW + 60), audience="api")
    rejects(verify, forge_access(es256, nbf=NOW + 61))
    rejects(verify, forge_access(es256, nbf="0"))


@pytest.mark.parametrize("aud", ["other", ["other"], [], None, 1, ["api", 1]], ids=repr)
def test_a_wrong_or_malformed_audience_is_rejected(
    aud: object, es256: KeyManager, clock: ManualClock
) -> None:
    rejects(verifier(es256, clock), forge_access(es256, aud=aud))


@pytest.mark.parametrize("sub", ["", None, 1, ["alice"]], ids=repr)
def test_sub_must_be_a_non_empty_string(sub: object, es256: KeyManager, clock: ManualClock) -> None:
    rejects(verifier(es256, clock), forge_access(es256, sub=sub))


# -- V5 Signature padding (GHSA-hxm8-2xgr-2p9m; Wycheproof tcIds 367, 370) ---------------


@pytest.mark.parametrize("suffix", ["=", "==", "!!!!", "A", " ", "\n", "%3D%3D"])
def test_a_signature_with_anything_appended_is_rejected(
    suffix: str, es256: KeyManager, clock: ManualClock
) -> None:
    # Revocation is keyed by jti, never by the token string (the facade's revoke-then-pad
    # case is tests/test_facade.py); a second spelling must not verify here either.
    rejects(verifier(es256, clock), forge_access(es256) + suffix)


def test_non_canonical_base64_in_any_segment_is_rejected(
    es256: KeyManager, clock: ManualClock
) -> None:
    token = forge_access(es256)
    head, body, sig = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for index, segment in enumerate((head, body, sig)):
        if len(segment) % 4 in (2, 3):
            bumped = segment[:-1] + alphabet[alphabet.index(segment[-1]) + 1]
            parts = [head, body, sig]
            parts[index] = bumped
            rejects(verifier(es256, clock), ".".join(parts))


# -- V6 Size and parser DoS ----------------------------------------------------------------


def test_a_5_mb_token_is_rejected_before_any_base64_decoding(
    es256: KeyManager, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[int] = []
    real_urlsafe = base64.urlsafe_b64decode
    real_ours = jws_module.b64decode

    def spy_urlsafe(data: Any, *args: Any) -> bytes:
        decoded.append(len(data))
        return real_urlsafe(data, *args)

    def spy_ours(segment: str) -> bytes:
        decoded.append(len(segment))
        return real_ours(segment)

    real_a2b = binascii.a2b_base64

    def spy_a2b(data: Any, *args: Any, **kwargs: Any) -> bytes:
        decoded.append(len(data))
        return real_a2b(data, *args, **kwargs)

    # Every route to a decoded segment: ours, the stdlib wrapper, and the C function below.
    monkeypatch.setattr(base64, "urlsafe_b64decode", spy_urlsafe)
    monkeypatch.setattr(binascii, "a2b_base64", spy_a2b)
    monkeypatch.setattr(jws_module, "b64decode", spy_ours)
    verify = verifier(es256, clock)
    verify.verify(forge_access(es256), audience="api")
    assert decoded, "the spy is live: a normal token is decoded"
    decoded.clear()
    huge = forge_access(es256, pad="A" * 5_000_000)
    for token in (huge, huge.encode("ascii")):
        rejects(verify, token)
    assert decoded == []


def test_the_byte_cap_is_inclusive_and_applies_to_str_and_bytes(
    es256: KeyManager, clock: ManualClock
) -> None:
    token = forge_access(es256, pad="A" * 3000)
    for form in (token, token.encode("ascii")):
        at_cap = verifier(es256, clock, max_bytes=len(token))
        assert at_cap.verify(form, audience="api")["sub"] == "alice"
        rejects(verifier(es256, clock, max_bytes=len(token) - 1), form)


def test_the_default_cap_is_8_kib(es256: KeyManager, clock: ManualClock) -> None:
    small = forge_access(es256, pad="A" * 5800)
    large = forge_access(es256, pad="A" * 6300)
    assert len(small) <= 8192 < len(large)
    assert verifier(es256, clock).verify(small, audience="api")["sub"] == "alice"
    rejects(verifier(es256, clock), large)


@pytest.mark.parametrize(
    "bomb",
    [b"[" * 100_000, b'{"a":' * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000],
    ids=["100k [", "100k unclosed objects", "100k closed objects"],
)
@pytest.mark.parametrize("where", ["header", "payload"])
def test_100k_nested_brackets_are_an_invalid_token_not_a_recursion_error(
    where: str, bomb: bytes, es256: KeyManager, clock: ManualClock
) -> None:
    kid, key = active_private_key(es256)
    header: Any = {"alg": "ES256", "kid": kid, "typ": "at+jwt"}
    token = forge(
        key,
        "ES256",
        bomb if where == "header" else header,
        bomb if where == "payload" else access_payload(),
    )
    rejects(verifier(es256, clock), token)  # the byte cap
    rejects(verifier(es256, clock, max_bytes=1_000_000), token)  # the parser itself


@pytest.mark.parametrize("crit", [["x-foo"], [], ["b64"], ["exp"], "b64"], ids=repr)
def test_any_crit_header_is_rejected(crit: object, es256: KeyManager, clock: ManualClock) -> None:
    # RFC 7515 §4.1.11; CVE-2026-32597.
    rejects(verifier(es256, clock), forge_access(es256, header={"crit": crit}))


@pytest.mark.parametrize(
    "header",
    [{"b64": False}, {"zip": "DEF"}, {"enc": "A256GCM"}],
    ids=["b64 false (RFC 7797)", "zip", "enc"],
)
def test_header_members_that_change_processing_are_rejected(
    header: dict[str, Any], es256: KeyManager, clock: ManualClock
) -> None:
    rejects(verifier(es256, clock), forge_access(es256, header=header))


def test_a_five_segment_jwe_is_rejected(es256: KeyManager, clock: ManualClock) -> None:
    head = b64json({"alg": "RSA-OAEP", "enc": "A256GCM", "kid": es256.signer().kid})
    rejects(verifier(es256, clock), f"{head}.{b64(b'k' * 32)}.{b64(b'iv')}.{b64(b'c')}.{b64(b't')}")


def test_json_serialization_and_a_compact_json_polyglot_are_rejected(
    es256: KeyManager, clock: ManualClock
) -> None:
    # python-jwt CVE-2022-39227, jwcrypto CVE-2022-3102.
    token = forge_access(es256)
    head, body, sig = token.split(".")
    flattened = json.dumps({"protected": head, "payload": body, "signature": sig})
    general = json.dumps({"payload": body, "signatures": [{"protected": head, "signature": sig}]})
    polyglot = json.dumps(
        {f" {head}.{body}.": "", "protected": head, "payload": body, "signature": sig}
    )
    for hostile in (flattened, general, polyglot, f"{token}.{token}", f"{token}.", f".{token}"):
        rejects(verifier(es256, clock), hostile)


@pytest.mark.parametrize("token", ["", ".", "..", "a.b", "a.b.c.d", "é.é.é", "\x00.\x00.\x00"])
def test_structurally_broken_tokens_are_rejected(
    token: str, es256: KeyManager, clock: ManualClock
) -> None:
    rejects(verifier(es256, clock), token)


@pytest.mark.parametrize("token", [None, 1, b"\xff.\xff.\xff", ["a", "b", "c"]], ids=repr)
def test_a_token_that_is_not_a_string_is_rejected(
    token: object, es256: KeyManager, clock: ManualClock
) -> None:
    rejects(verifier(es256, clock), token)


# -- V7 ECDSA edge cases (CVE-2022-21449); the full set is in test_wycheproof.py -----------


def test_a_psychic_signature_is_rejected(es256: KeyManager, clock: ManualClock) -> None:
    head, body, _ = forge_access(es256).split(".")
    for sig in (bytes(64), b"\x30\x06\x02\x01\x00\x02\x01\x00"):
        rejects(verifier(es256, clock), f"{head}.{body}.{b64(sig)}")


# -- V8 Duplicate members and encodings (RFC 7515 §4, RFC 8725 §3.7) -----------------------


def test_a_duplicated_header_member_is_rejected(es256: KeyManager, clock: ManualClock) -> None:
    kid, key = active_private_key(es256)
    for header in (
        f'{{"alg":"none","alg":"ES256","kid":"{kid}","typ":"at+jwt"}}',
        f'{{"alg":"ES256","kid":"{kid}","typ":"JWT","typ":"at+jwt"}}',
        f'{{"alg":"ES256","kid":"other","kid":"{kid}","typ":"at+jwt"}}',
    ):
        rejects(verifier(es256, clock), forge(key, "ES256", header, access_payload()))


def test_a_duplicated_claim_is_rejected(es256: KeyManager, clock: ManualClock) -> None:
    kid, key = active_private_key(es256)
    body = json.dumps(access_payload(), separators=(",", ":"))
    for duplicate in ('"sub":"mallory"', '"aud":"other"', f'"exp":{NOW - 10_000}'):
        raw = body[:-1] + "," + duplicate + "}"
        header = {"alg": "ES256", "kid": kid, "typ": "at+jwt"}
        rejects(verifier(es256, clock), forge(key, "ES256", header, raw))


ENCODINGS = ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-8-sig"]


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("where", ["header", "payload"])
def test_a_segment_not_in_plain_utf_8_is_rejected(
    encoding: str, where: str, es256: KeyManager, clock: ManualClock
) -> None:
    # PyJWT accepts these: json.loads(bytes) auto-detects the encoding.
    kid, key = active_private_key(es256)
    header = json.dumps({"alg": "ES256", "kid": kid, "typ": "at+jwt"})
    payload = json.dumps(access_payload())
    if where == "header":
        token = forge(key, "ES256", header.encode(encoding), payload)
    else:
        token = forge(key, "ES256", header, payload.encode(encoding))
    rejects(verifier(es256, clock), token)


def test_invalid_utf_8_in_the_claims_is_rejected(es256: KeyManager, clock: ManualClock) -> None:
    # panva/jose "invalid UTF-8 in the Claims Set is rejected".
    kid, key = active_private_key(es256)
    body = json.dumps(access_payload(sub="SUB")).encode().replace(b"SUB", b"\xc3\x28")
    rejects(
        verifier(es256, clock),
        forge(key, "ES256", {"alg": "ES256", "kid": kid, "typ": "at+jwt"}, body),
    )


@pytest.mark.parametrize("payload", [b"[]", b'"x"', b"1", b"null", b"", b" "], ids=repr)
def test_a_payload_that_is_not_a_json_object_is_rejected(
    payload: bytes, es256: KeyManager, clock: ManualClock
) -> None:
    kid, key = active_private_key(es256)
    header = {"alg": "ES256", "kid": kid, "typ": "at+jwt"}
    rejects(verifier(es256, clock), forge(key, "ES256", header, payload))
