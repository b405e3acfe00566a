"""Wycheproof JOSE vectors through our own key loading and JWS verifier (SECURITY §5, V7, V9).

Every vector of ``json_web_signature_test.json`` (401) and ``json_web_key_test.json`` (26),
C2SP/wycheproof ``testvectors_v1`` at commit dac1dd47, copied into
``tests/fixtures/wycheproof/`` (Apache-2.0, LICENSE beside them). Each group's key (its
``public`` JWK or JWK Set, else its ``private`` one, which our loader must then refuse) goes
through ``JwkSet``; the token through ``CompactVerifier``. These vectors sign the payload
"foo", not JWT claims, so they stop at the JWS level.

Expected: every ``invalid`` vector is rejected; every ``valid`` one is accepted unless it is
listed in ``OUT_OF_SCOPE`` below with the reason, in which case it is reported as skipped
(and, separately, asserted to be refused: out of scope means refused on purpose).

The file has no ``valid`` JSON-serialization vector (tcId 17 is ``invalid`` and rejected);
JSON serialization would be out of scope for the same reason as ``EMPTY_PAYLOAD``.

The second half builds the ECDSA P1363 and Ed25519 edge cases of SECURITY V7 by hand (the
``wycheproof`` package is not installed here) and runs them through ``AccessTokenVerifier``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tests.jose_helpers import NOW, b64, forge_access, make_keys, verifier
from tokensmith.clock import ManualClock
from tokensmith.errors import InvalidToken, TokensmithError
from tokensmith.keys.jwkset import JwkSet
from tokensmith.tokens.jws import CompactVerifier, b64decode
from tokensmith.tokens.verify import DEFAULT_ALGS, AccessTokenVerifier

FIXTURES = Path(__file__).parent / "fixtures" / "wycheproof"

HMAC = (
    "HMAC: tokensmith never accepts a symmetric algorithm or an oct key for verification "
    "(docs/contract.md 'Dependencies', RFC 8725 §3.2); the key is refused at load time"
)
UNSUPPORTED_ALG = (
    "RS384/RS512/PS384/PS512/ES512 are not tokensmith algorithms (docs/contract.md 'Keys': EdDSA, "
    "ES256, ES384, RS256, PS256)"
)
EMPTY_PAYLOAD = (
    "empty payload segment: tokensmith verifies JWTs, whose payload is a JSON object "
    "(RFC 7519 §7.2), so the compact parser refuses an empty segment before any key lookup"
)

# (file, tcId) → why a ``valid`` vector is not accepted by design.
OUT_OF_SCOPE: dict[tuple[str, int], str] = {
    **{("jws", tc): HMAC for tc in (1, 348, 352, 357, 358, 359, 372, 373, 376, 377)},
    **{("jwk", tc): HMAC for tc in (2, 13, 14, 15)},
    **{("jws", tc): UNSUPPORTED_ALG for tc in (264, 265, 266, 267, 268, 269, 270, 271)},
    **{("jws", tc): UNSUPPORTED_ALG for tc in (320, 321, 322, 323, 325, 326, 327, 328)},
    **{("jws", tc): UNSUPPORTED_ALG for tc in (346, 347, 350, 351)},
    **{("jws", tc): EMPTY_PAYLOAD for tc in (259, 272)},
}
FILES = {"jws": "json_web_signature_test.json", "jwk": "json_web_key_test.json"}


def _vectors() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for short, name in FILES.items():
        data = json.loads((FIXTURES / name).read_text("utf-8"))
        for group in data["testGroups"]:
            for test in group["tests"]:
                yield short, group, test


VECTORS = list(_vectors())


def _key_set(group: dict[str, Any]) -> JwkSet:
    key = group.get("public") or group["private"]
    return JwkSet(key if "keys" in key else {"keys": [key]})


def _accepts(group: dict[str, Any], token: object) -> bool:
    jws = CompactVerifier(_key_set(group), max_bytes=8192, allowed_algs=DEFAULT_ALGS)
    try:
        jws.verify(token)
    except InvalidToken:
        return False
    return True


def _header_kid(token: str) -> object:
    try:
        return json.loads(b64decode(token.split(".")[0])).get("kid")
    except (TokensmithError, ValueError, AttributeError, KeyError):
        return None


@pytest.mark.parametrize(
    ("short", "group", "test"),
    VECTORS,
    ids=[f"{s} tcId {t['tcId']} {t['comment']} is {t['result']}" for s, _, t in VECTORS],
)
def test_wycheproof_vector(short: str, group: dict[str, Any], test: dict[str, Any]) -> None:
    reason = OUT_OF_SCOPE.get((short, test["tcId"]))
    if reason is not None:
        pytest.skip(reason)
    accepted = _accepts(group, test["jws"])
    assert accepted is (test["result"] == "valid")
    if short == "jwk" and test["result"] == "invalid":
        # The key vectors are about the key: it must be refused at load time, not merely
        # fail a signature check later.
        assert _key_set(group).verification_key(str(_header_kid(test["jws"]))) is None


def test_out_of_scope_table_names_only_valid_vectors_and_we_refuse_each_of_them() -> None:
    by_id = {(s, t["tcId"]): (g, t) for s, g, t in VECTORS}
    for ident in OUT_OF_SCOPE:
        group, test = by_id[ident]
        assert test["result"] == "valid", ident
        assert not _accepts(group, test["jws"]), ident


def test_wycheproof_tally_is_what_the_report_says() -> None:
    tally = {"valid accepted": 0, "invalid rejected": 0, "skipped (out of scope)": 0}
    for short, group, test in VECTORS:
        if (short, test["tcId"]) in OUT_OF_SCOPE:
            tally["skipped (out of scope)"] += 1
        elif test["result"] == "valid":
            tally["valid accepted"] += _accepts(group, test["jws"])
        else:
            tally["invalid rejected"] += not _accepts(group, test["jws"])
    assert len(VECTORS) == 401 + 26
    assert tally == {"valid accepted": 15, "invalid rejected": 376, "skipped (out of scope)": 36}


# -- SECURITY V7: ECDSA P1363 and Ed25519 edge cases through the verify path --------------

N256 = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
CURVE_ORDER = {
    "ES256": N256,
    "ES384": int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
        16,
    ),
}


def _p1363(r: int, s: int, size: int) -> bytes:
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def _with_signature(token: str, signature: bytes) -> str:
    head, body, _ = token.split(".")
    return f"{head}.{body}.{b64(signature)}"


def _ecdsa_cases(alg: str, good: bytes) -> dict[str, bytes]:
    n = CURVE_ORDER[alg]
    size = len(good) // 2
    r, s = int.from_bytes(good[:size], "big"), int.from_bytes(good[size:], "big")
    return {
        "r = s = 0 in P1363 form": _p1363(0, 0, size),
        "r = s = n in P1363 form": _p1363(n, n, size),
        "r = s = 0 in DER form": encode_dss_signature(0, 0),
        "r = s = n in DER form": encode_dss_signature(n, n),
        "r = 0 with the real s": _p1363(0, s, size),
        "the real s with r = n": _p1363(n, s, size),
        "r + n, s + n (unreduced, too long)": (r + n).to_bytes(size + 1, "big")
        + (s + n).to_bytes(size + 1, "big"),
        "the valid signature re-encoded as DER": encode_dss_signature(r, s),
        "R and S each zero-padded by one byte (65+65 for P-256)": b"\0"
        + good[:size]
        + b"\0"
        + good[size:],
        "the valid signature with a trailing zero byte": good + b"\0",
        "the valid signature truncated by one byte": good[:-1],
        "r and s swapped": good[size:] + good[:size],
    }


@pytest.fixture(scope="module")
def signed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, AccessTokenVerifier, str]:
    clock = ManualClock(NOW)
    km = make_keys(tmp_path_factory.mktemp(request.param), clock, request.param)
    token = forge_access(km)
    verify = verifier(km, clock)
    assert verify.verify(token, audience="api")["sub"] == "alice"  # the control case
    return request.param, verify, token


ECDSA_CASES = list(_ecdsa_cases("ES256", bytes(64)))


@pytest.mark.parametrize("signed", ["ES256", "ES384"], indirect=True)
@pytest.mark.parametrize("case", ECDSA_CASES)
def test_ecdsa_edge_case_is_rejected_by_the_access_token_verifier(
    case: str, signed: tuple[str, AccessTokenVerifier, str]
) -> None:
    alg, verify, token = signed
    signature = _ecdsa_cases(alg, b64decode(token.split(".")[2]))[case]
    with pytest.raises(InvalidToken):
        verify.verify(_with_signature(token, signature), audience="api")


def test_a_psychic_signature_is_rejected_for_a_foreign_es256_key_too() -> None:
    # CVE-2022-21449 through the JWK Set path, with the Wycheproof key and token.
    group = next(g for s, g, _ in VECTORS if s == "jws" and g["comment"] == "es256")
    token = next(t["jws"] for s, g, t in VECTORS if g is group and t["tcId"] == 18)
    assert _accepts(group, token)
    for signature in (encode_dss_signature(0, 0), _p1363(0, 0, 32), _p1363(N256, N256, 32)):
        assert not _accepts(group, _with_signature(token, signature))


ED25519_L = 2**252 + 27742317777372353535851937790883648493
IDENTITY = bytes([1]) + bytes(31)


def _ed25519_cases(good: bytes) -> dict[str, bytes]:
    s = int.from_bytes(good[32:], "little")
    return {
        # RFC 8032 §5.1.7: S must be below L; S + L satisfies the same group equation.
        "S replaced by S + L (malleable, non-canonical)": good[:32]
        + (s + ED25519_L).to_bytes(32, "little"),
        "all-zero signature": bytes(64),
        "R = identity, S = 0": IDENTITY + bytes(32),
        "one bit of R flipped": bytes([good[0] ^ 1]) + good[1:],
        "one bit of S flipped": good[:32] + bytes([good[32] ^ 1]) + good[33:],
        "63 bytes": good[:-1],
        "65 bytes": good + b"\0",
    }


@pytest.mark.parametrize("signed", ["EdDSA"], indirect=True)
@pytest.mark.parametrize("case", list(_ed25519_cases(bytes(64))))
def test_ed25519_edge_case_is_rejected_by_the_access_token_verifier(
    case: str, signed: tuple[str, AccessTokenVerifier, str]
) -> None:
    _, verify, token = signed
    signature = _ed25519_cases(b64decode(token.split(".")[2]))[case]
    with pytest.raises(InvalidToken):
        verify.verify(_with_signature(token, signature), audience="api")


def test_an_ed25519_signature_from_another_key_is_rejected(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    ours = make_keys(tmp_path / "ours", clock, "EdDSA")
    theirs = make_keys(tmp_path / "theirs", clock, "EdDSA")
    forged = forge_access(theirs, header={"kid": ours.signer().kid})
    with pytest.raises(InvalidToken):
        verifier(ours, clock).verify(forged, audience="api")
