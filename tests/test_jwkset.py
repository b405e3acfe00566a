"""SECURITY V9: loading foreign JWKs and JWK Sets (``tokensmith.keys.jwkset``).

One test (or parametrized set) per rule of the module docstring; the Wycheproof
``json_web_key_test.json`` vectors run in ``test_wycheproof.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.jose_helpers import ALGS, NOW, b64, forge_access, make_keys, verifier
from tokensmith.clock import ManualClock
from tokensmith.errors import InvalidKey, InvalidToken, TokensmithError
from tokensmith.keys import KeyManager
from tokensmith.keys.jwk import public_jwk
from tokensmith.keys.jwkset import JwkSet, has_roca_fingerprint, load_jwk

WYCHEPROOF = Path(__file__).parent / "fixtures" / "wycheproof" / "json_web_key_test.json"


def _wycheproof_group(comment: str) -> dict[str, Any]:
    data = json.loads(WYCHEPROOF.read_text("utf-8"))
    group: dict[str, Any] = next(g for g in data["testGroups"] if g["comment"] == comment)
    return group


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


def ec_jwk(curve: ec.EllipticCurve | None = None, alg: str = "ES256") -> dict[str, Any]:
    key = ec.generate_private_key(curve or ec.SECP256R1())
    return {**public_jwk(key.public_key(), alg), "kid": "ec"}


def okp_jwk() -> dict[str, Any]:
    return {**public_jwk(ed25519.Ed25519PrivateKey.generate().public_key(), "EdDSA"), "kid": "ed"}


def rsa_jwk(key: rsa.RSAPrivateKey, alg: str = "RS256") -> dict[str, Any]:
    return {**public_jwk(key.public_key(), alg), "kid": "rsa"}


def refused(jwk: object, reason: str = "") -> None:
    with pytest.raises(InvalidKey, match=reason or None):
        load_jwk(jwk)


# -- accepted key types, each bound to exactly one algorithm --------------------------------


def test_each_supported_key_type_loads_bound_to_its_algorithm(rsa_key: rsa.RSAPrivateKey) -> None:
    assert load_jwk(ec_jwk()).alg == "ES256"
    assert load_jwk(ec_jwk(ec.SECP384R1(), "ES384")).alg == "ES384"
    assert load_jwk(okp_jwk()).alg == "EdDSA"
    assert load_jwk(rsa_jwk(rsa_key, "RS256")).alg == "RS256"
    assert load_jwk(rsa_jwk(rsa_key, "PS256")).alg == "PS256"


def test_an_ec_or_okp_key_without_alg_takes_the_one_its_curve_allows() -> None:
    for jwk, alg in ((ec_jwk(), "ES256"), (ec_jwk(ec.SECP384R1(), "ES384"), "ES384")):
        del jwk["alg"]
        assert load_jwk(jwk).alg == alg
    okp = okp_jwk()
    del okp["alg"]
    assert load_jwk(okp).alg == "EdDSA"


def test_the_rfc_9864_name_ed25519_is_accepted_for_an_okp_key() -> None:
    assert load_jwk({**okp_jwk(), "alg": "Ed25519"}).alg == "EdDSA"


def test_an_rsa_key_without_alg_is_ambiguous_and_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    jwk = rsa_jwk(rsa_key)
    del jwk["alg"]
    refused(jwk, "ambiguous")


# -- kty, use, key_ops ---------------------------------------------------------------------


@pytest.mark.parametrize("kty", ["oct", "RSA-PSS", "EC2", "ec", "", None, 1, ["EC"]], ids=repr)
def test_only_ec_okp_and_rsa_key_types_are_kept(kty: object) -> None:
    refused({**ec_jwk(), "kty": kty})


def test_a_symmetric_key_is_never_a_verification_key() -> None:
    refused({"kty": "oct", "kid": "h", "alg": "HS256", "k": b64(b"s" * 32)}, "symmetric")


@pytest.mark.parametrize("use", ["enc", "SIG", "", None, ["sig"]], ids=repr)
def test_use_must_be_absent_or_sig(use: object) -> None:
    refused({**ec_jwk(), "use": use})


@pytest.mark.parametrize(
    ("key_ops", "ok"),
    [
        (["verify"], True),
        (["sign", "verify"], True),
        (["encrypt"], False),
        (["sign"], False),
        ([], False),
        ("verify", False),
        (["sign, verify"], False),
        (["verify", "verify"], False),
        ([1], False),
    ],
    ids=repr,
)
def test_key_ops_must_allow_verify(key_ops: object, ok: bool) -> None:
    jwk = {**ec_jwk(), "key_ops": key_ops}
    del jwk["use"]
    if ok:
        assert load_jwk(jwk).alg == "ES256"
    else:
        refused(jwk)


# -- alg consistent with kty/crv (RFC 8725 §3.1) -------------------------------------------


@pytest.mark.parametrize(
    ("make", "alg"),
    [
        ("P-256", "ES384"),
        ("P-256", "ES512"),
        ("P-256", "RS256"),
        ("P-256", "EdDSA"),
        ("P-256", "HS256"),
        ("P-256", "none"),
        ("P-384", "ES256"),
        ("Ed25519", "ES256"),
        ("Ed25519", "EdDSA448"),
        ("RSA", "ES256"),
        ("RSA", "HS256"),
        ("RSA", "PS384"),
        ("RSA", "RS512"),
        ("RSA", "RSA-OAEP"),
        ("RSA", "none"),
        ("RSA", 256),
        ("P-256", None),
        ("RSA", None),
    ],
    ids=lambda v: str(v),
)
def test_an_alg_that_contradicts_the_key_is_refused(
    make: str, alg: object, rsa_key: rsa.RSAPrivateKey
) -> None:
    base = {
        "P-256": ec_jwk,
        "P-384": lambda: ec_jwk(ec.SECP384R1(), "ES384"),
        "Ed25519": okp_jwk,
        "RSA": lambda: rsa_jwk(rsa_key),
    }[make]()
    refused({**base, "alg": alg})


@pytest.mark.parametrize("crv", ["P-521", "secp256k1", "Ed448", "X25519", None], ids=repr)
def test_unsupported_curves_are_refused(crv: object) -> None:
    refused({**ec_jwk(), "crv": crv})
    refused({**okp_jwk(), "crv": crv})


# -- private members -------------------------------------------------------------------------


@pytest.mark.parametrize("member", ["d", "p", "q", "dp", "dq", "qi", "oth", "k"])
def test_a_key_with_a_private_member_is_refused_in_a_public_set(member: str) -> None:
    refused({**ec_jwk(), member: b64(b"\x01" * 32)}, "private")


def test_a_real_private_jwk_is_refused() -> None:
    private = _wycheproof_group("rs256")["private"]["keys"][0]
    assert "d" in private
    refused(private, "private")


# -- RSA strength ----------------------------------------------------------------------------


def test_rsa_keys_below_2048_bits_are_refused() -> None:
    refused(_wycheproof_group("keysize_too_small")["public"]["keys"][0], "2048")
    small = rsa.generate_private_key(65537, 1024)
    refused(rsa_jwk(small), "2048")


def test_rsa_2048_bits_is_the_floor(rsa_key: rsa.RSAPrivateKey) -> None:
    assert rsa_key.key_size == 2048
    assert load_jwk(rsa_jwk(rsa_key)).public_key.key_size == 2048  # type: ignore[union-attr]


@pytest.mark.parametrize("e", [1, 2, 65536, 0, 2**32 + 1, 2**255 + 1], ids=lambda e: f"e={e}")
def test_rsa_exponent_must_be_odd_at_least_3_and_below_2_to_the_32(
    e: int, rsa_key: rsa.RSAPrivateKey
) -> None:
    encoded = b64(e.to_bytes(max(1, (e.bit_length() + 7) // 8), "big"))
    refused({**rsa_jwk(rsa_key), "e": encoded})


def test_rsa_exponent_3_is_accepted() -> None:
    key = rsa.generate_private_key(3, 2048)
    assert load_jwk(rsa_jwk(key)).alg == "RS256"


def test_an_rsa_modulus_beyond_16384_bits_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    refused({**rsa_jwk(rsa_key), "n": b64(b"\xff" * (16384 // 8 + 1))}, "bits")


def test_the_wycheproof_exponent_one_key_is_refused() -> None:
    refused(_wycheproof_group("exponentOne")["public"]["keys"][0], "exponent")


def test_a_roca_fingerprinted_modulus_is_refused() -> None:
    # CVE-2017-15361; Wycheproof jws_rsa_roca_key.
    refused(_wycheproof_group("jws_rsa_roca_key")["public"]["keys"][0], "ROCA")


def test_the_roca_fingerprint_matches_the_roca_detect_markers() -> None:
    # roca-detect's first markers: bit i set iff i is in <65537 mod r> for r = 3, 5, 7, ...
    from tokensmith.keys.jwkset import _ROCA_SUBGROUPS

    markers = [6, 30, 126, 1026, 5658, 107286, 199410, 8388606, 536870910, 2147483646]
    assert [sum(1 << v for v in group) for _, group in _ROCA_SUBGROUPS[:10]] == markers
    assert len(_ROCA_SUBGROUPS) == 38 and _ROCA_SUBGROUPS[-1][0] == 167


def test_ordinary_rsa_moduli_do_not_have_the_roca_fingerprint(rsa_key: rsa.RSAPrivateKey) -> None:
    assert not has_roca_fingerprint(rsa_key.public_key().public_numbers().n)
    # 65537^a mod M itself (the structure of an Infineon prime product) is fingerprinted.
    primorial = 1
    for r in (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73):
        primorial *= r
    for r in (79, 83, 89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157):
        primorial *= r
    primorial *= 163 * 167
    assert has_roca_fingerprint(pow(65537, 12345, primorial) + 7 * primorial)


# -- EC and Ed25519 points -------------------------------------------------------------------


def test_an_ec_point_off_the_curve_is_refused() -> None:
    refused(_wycheproof_group("invalid_point")["public"]["keys"][0], "curve")
    refused({**ec_jwk(), "y": b64(bytes(31) + b"\x07")}, "curve")


def test_ec_coordinates_must_have_the_full_curve_size() -> None:
    jwk = ec_jwk()
    refused({**jwk, "x": b64(b"\x01" * 31)}, "length")
    refused({**jwk, "x": b64(b"\x00" + b"\x01" * 32)}, "length")
    p256_coordinates = _wycheproof_group("wrong_curve")["public"]["keys"][0]
    refused({**p256_coordinates, "alg": "ES384"}, "length")  # labelled P-384


# The eight points of order dividing 8 on edwards25519, computed from the curve equation
# (they are also libsodium's small-order blocklist).
SMALL_ORDER = [
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
]


@pytest.mark.parametrize("point", SMALL_ORDER)
def test_a_small_order_ed25519_key_is_refused(point: str) -> None:
    refused({**okp_jwk(), "x": b64(bytes.fromhex(point))}, "small-order")


def test_a_small_order_key_would_otherwise_verify_a_forgery_on_any_message() -> None:
    # Why the rule exists: OpenSSL accepts (R = identity, S = 0) under the identity key.
    identity = bytes.fromhex(SMALL_ORDER[0])
    ed25519.Ed25519PublicKey.from_public_bytes(identity).verify(identity + bytes(32), b"any")


def test_a_non_canonical_ed25519_encoding_is_refused() -> None:
    p = 2**255 - 19
    refused({**okp_jwk(), "x": b64((p + 2).to_bytes(32, "little"))})
    refused({**okp_jwk(), "x": b64(b"\x01" * 31)}, "length")


# -- encoding of members ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "mangle",
    [lambda v: v + "=", lambda v: v + "==", lambda v: v.replace("-", "+").replace("_", "/") + "+/",
     lambda v: " " + v, lambda v: v[:-1] + "!", lambda v: "", lambda v: 5],
    ids=["padded", "padded twice", "standard alphabet", "leading space", "bang", "empty", "number"],
)  # fmt: skip
def test_key_members_must_be_canonical_unpadded_base64url(mangle: Any) -> None:
    jwk = ec_jwk()
    refused({**jwk, "x": mangle(jwk["x"])})


# -- kid -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kid", [None, "", 1, ["a"]], ids=repr)
def test_a_key_without_a_usable_kid_is_refused(kid: object) -> None:
    jwk = ec_jwk()
    if kid is None:
        del jwk["kid"]
    else:
        jwk["kid"] = kid
    refused(jwk, "kid")


def test_a_kid_claimed_by_two_keys_refuses_both_and_keeps_the_rest() -> None:
    a, b, c = ec_jwk(), ec_jwk(), okp_jwk()
    a["kid"] = b["kid"] = "same"
    keys = JwkSet({"keys": [a, b, c]})
    assert keys.verification_key("same") is None
    assert keys.verification_key("ed") is not None
    assert [(r.index, r.kid) for r in keys.rejected] == [(0, "same"), (1, "same")]


def test_a_kid_claimed_by_a_good_key_and_a_broken_one_is_still_ambiguous() -> None:
    good, broken = ec_jwk(), {"kty": "oct", "kid": "ec", "k": "AAAA"}
    assert JwkSet({"keys": [good, broken]}).verification_key("ec") is None


# -- the set ---------------------------------------------------------------------------------


def test_one_malformed_key_does_not_drop_the_set() -> None:
    # CVE-2026-102274: PyJWT's PyJWKSet aborted on the first bad key.
    good = okp_jwk()
    junk: list[object] = [
        1,
        "x",
        None,
        [],
        {},
        {"kty": "RSA", "kid": "r", "alg": "RS256", "n": "!!", "e": "AQAB"},
        {"kty": "EC", "kid": "e", "crv": "P-256", "x": "AA", "y": "AA"},
        {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
        {**ec_jwk(), "kid": "priv", "d": "AAAA"},
    ]
    for position in (0, len(junk)):
        entries = [*junk[:position], good, *junk[position:]]
        keys = JwkSet({"keys": entries})
        assert keys.kids() == frozenset({"ed"})
        assert len(keys) == 1
        assert len(keys.rejected) == len(junk)
        assert all(r.reason for r in keys.rejected)


@pytest.mark.parametrize(
    "jwks", [None, [], "keys", {}, {"keys": {}}, {"keys": "x"}, {"key": []}], ids=repr
)
def test_a_document_that_is_not_a_jwk_set_is_refused(jwks: object) -> None:
    with pytest.raises(InvalidKey):
        JwkSet(jwks)


def test_an_empty_set_verifies_nothing(clock_now: ManualClock, es256_keys: KeyManager) -> None:
    token = forge_access(es256_keys)
    with pytest.raises(InvalidToken):
        verifier(JwkSet({"keys": []}), clock_now).verify(token, audience="api")


def test_lookups_with_a_non_string_kid_miss() -> None:
    keys = JwkSet({"keys": [okp_jwk()]})
    assert keys.verification_key(None) is None  # type: ignore[arg-type]
    assert keys.verification_key(["ed"]) is None  # type: ignore[arg-type]


def test_invalid_key_is_a_tokensmith_error() -> None:
    assert issubclass(InvalidKey, TokensmithError)


# -- our own JWKS round-trips through the loader ---------------------------------------------


@pytest.fixture
def clock_now() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture(scope="module")
def es256_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyManager:
    return make_keys(tmp_path_factory.mktemp("es256"), ManualClock(NOW), "ES256")


@pytest.mark.parametrize("alg", ALGS)
def test_our_published_jwks_loads_and_verifies_our_tokens(alg: str, tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    km = make_keys(tmp_path, clock, alg)
    keys = JwkSet(km.jwks())
    assert keys.rejected == ()
    assert keys.kids() == frozenset(jwk["kid"] for jwk in km.jwks()["keys"])
    claims = verifier(keys, clock).verify(forge_access(km), audience="api")
    assert claims["sub"] == "alice"
