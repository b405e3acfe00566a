"""SECURITY K5 (interop) and K4 (``at_hash``).

For every algorithm: tokens minted by tokensmith verify with joserfc and jwcrypto against
``km.jwks()``; tokens joserfc makes with our private key (the PKCS#8 PEM from the
``FileKeyStore``) verify with ours; tokens it makes with a wrong ``typ``, ``aud`` or ``alg``
are rejected by ours. ``at_hash`` is recomputed independently with ``hashlib``.

The clock here is the real time: jwcrypto checks ``exp``/``nbf`` against ``time.time()``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

import pytest
from joserfc import jwt as joserfc_jwt
from joserfc.jwk import ECKey, KeySet, OctKey, OKPKey, RSAKey
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jwt as jwcrypto_jwt

from tests.jose_helpers import ALGS, ISSUER, make_keys
from tokensmith.clock import ManualClock
from tokensmith.errors import InvalidToken
from tokensmith.keys import KeyManager
from tokensmith.tokens.mint import (
    AccessTokenClaims,
    IdTokenClaims,
    mint_access_token,
    mint_id_token,
    new_jti,
)
from tokensmith.tokens.verify import AccessTokenVerifier, IdTokenVerifier

# joserfc 1.8 warns that the polymorphic name "EdDSA" is deprecated by RFC 9864; we still
# publish and sign EdDSA (docs/contract.md "Keys"), so that one warning is expected here.
pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated via RFC 9864")

NOW = int(time.time())
# Verified against the real clock by the other libraries: valid long enough for a whole
# suite (the failover tests alone take minutes before this module's tests run).
TTL = 3600
JOSERFC_KEY = {"EC": ECKey, "RSA": RSAKey, "OKP": OKPKey}
KTY = {"ES256": "EC", "ES384": "EC", "EdDSA": "OKP", "RS256": "RSA", "PS256": "RSA"}


@pytest.fixture(scope="module", params=ALGS)
def km(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> KeyManager:
    return make_keys(tmp_path_factory.mktemp(request.param), ManualClock(NOW), request.param)


def _clock() -> ManualClock:
    return ManualClock(NOW)


def _access_token(km: KeyManager) -> str:
    claims = AccessTokenClaims("alice", "spa", "api", "openid", NOW, NOW + TTL, new_jti(), "s1")
    return mint_access_token(km.signer(), ISSUER, claims)


def _claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": "api",
        "exp": NOW + TTL,
        "iat": NOW,
        "nbf": NOW,
        "jti": new_jti(),
        "client_id": "spa",
        "scope": "openid",
    }
    claims.update(overrides)
    return claims


_IMPORTED: dict[str, Any] = {}


def _joserfc_private_key(km: KeyManager) -> Any:
    """The active key as joserfc imports it from the store's PEM (cached: RSA import checks
    the key and is slow)."""
    kid = km.signer().kid
    if kid not in _IMPORTED:
        pem = (km.store.directory / f"{kid}.pem").read_bytes()  # type: ignore[attr-defined]
        _IMPORTED[kid] = JOSERFC_KEY[KTY[km.alg]].import_key(pem)
    return _IMPORTED[kid]


def _ours(km: KeyManager) -> AccessTokenVerifier:
    return AccessTokenVerifier(km, issuer=ISSUER, clock=_clock())


# -- ours → theirs ---------------------------------------------------------------------------


def test_our_access_token_verifies_with_joserfc_against_our_jwks(km: KeyManager) -> None:
    token = _access_token(km)
    decoded = joserfc_jwt.decode(token, KeySet.import_key_set(km.jwks()), algorithms=[km.alg])
    assert decoded.header == {"alg": km.alg, "kid": km.signer().kid, "typ": "at+jwt"}
    assert decoded.claims["sub"] == "alice"
    registry = joserfc_jwt.JWTClaimsRegistry(
        now=NOW, iss={"essential": True, "value": ISSUER}, aud={"essential": True, "value": "api"}
    )
    registry.validate(decoded.claims)


def test_our_access_token_verifies_with_jwcrypto_against_our_jwks(km: KeyManager) -> None:
    token = _access_token(km)
    keys = jwcrypto_jwk.JWKSet.from_json(json.dumps(km.jwks()))
    decoded = jwcrypto_jwt.JWT(
        jwt=token,
        key=keys,
        algs=[km.alg],
        expected_type="JWS",
        check_claims={"iss": ISSUER, "aud": "api", "exp": None},
    )
    assert json.loads(decoded.claims)["sub"] == "alice"


def test_our_id_token_verifies_with_joserfc_and_jwcrypto(km: KeyManager) -> None:
    token = mint_id_token(km.signer(), ISSUER, IdTokenClaims("alice", "spa", NOW, NOW + TTL, NOW))
    claims = joserfc_jwt.decode(token, KeySet.import_key_set(km.jwks()), algorithms=[km.alg])
    assert claims.claims["aud"] == "spa"
    keys = jwcrypto_jwk.JWKSet.from_json(json.dumps(km.jwks()))
    jwcrypto_jwt.JWT(jwt=token, key=keys, algs=[km.alg], expected_type="JWS")


# -- theirs → ours ---------------------------------------------------------------------------


def _joserfc_token(km: KeyManager, header: dict[str, Any], claims: dict[str, Any]) -> str:
    key = _joserfc_private_key(km)
    algs = [header["alg"]]
    return joserfc_jwt.encode(header, claims, key, algorithms=algs)


def test_a_token_joserfc_signs_with_our_private_key_verifies_with_ours(km: KeyManager) -> None:
    header = {"alg": km.alg, "kid": km.signer().kid, "typ": "at+jwt"}
    token = _joserfc_token(km, header, _claims())
    assert _ours(km).verify(token, audience="api")["sub"] == "alice"


@pytest.mark.parametrize("typ", ["JWT", None, "at+jwt+x"], ids=repr)
def test_a_joserfc_token_with_a_wrong_typ_is_rejected_by_ours(
    typ: str | None, km: KeyManager
) -> None:
    header: dict[str, Any] = {"alg": km.alg, "kid": km.signer().kid}
    if typ is not None:
        header["typ"] = typ
    with pytest.raises(InvalidToken):
        _ours(km).verify(_joserfc_token(km, header, _claims()), audience="api")


def test_a_joserfc_token_for_another_audience_is_rejected_by_ours(km: KeyManager) -> None:
    header = {"alg": km.alg, "kid": km.signer().kid, "typ": "at+jwt"}
    token = _joserfc_token(km, header, _claims(aud="other-api"))
    with pytest.raises(InvalidToken):
        _ours(km).verify(token, audience="api")


def test_a_joserfc_token_with_a_wrong_alg_is_rejected_by_ours(km: KeyManager) -> None:
    kid = km.signer().kid
    claims = _claims()
    # The attacker's key of another type, naming our kid.
    other_alg = "ES384" if km.alg != "ES384" else "ES256"
    attacker = ECKey.generate_key("P-384" if other_alg == "ES384" else "P-256")
    forged = joserfc_jwt.encode(
        {"alg": other_alg, "kid": kid, "typ": "at+jwt"}, claims, attacker, algorithms=[other_alg]
    )
    with pytest.raises(InvalidToken):
        _ours(km).verify(forged, audience="api")
    # HS256 keyed with our own published JWK (the classic confusion): joserfc signs it.
    published = next(k for k in km.jwks()["keys"] if k["kid"] == kid)
    secret = json.dumps(published).encode()
    hs = joserfc_jwt.encode(
        {"alg": "HS256", "kid": kid, "typ": "at+jwt"},
        claims,
        OctKey.import_key(secret),
        algorithms=["HS256"],
    )
    with pytest.raises(InvalidToken):
        _ours(km).verify(hs, audience="api")


# -- K4 at_hash ------------------------------------------------------------------------------

HASHES = {
    "ES256": (hashlib.sha256, 16),
    "RS256": (hashlib.sha256, 16),
    "PS256": (hashlib.sha256, 16),
    "ES384": (hashlib.sha384, 24),
    "EdDSA": (hashlib.sha512, 32),
}


def test_at_hash_is_the_left_half_of_the_digest_named_by_alg(km: KeyManager) -> None:
    # OIDC Core §3.1.3.6; SHA-512 for Ed25519 (OIDF connect issue 1125).
    access = _access_token(km)
    id_token = mint_id_token(
        km.signer(),
        ISSUER,
        IdTokenClaims("alice", "spa", NOW, NOW + TTL, NOW, access_token=access),
    )
    claims = IdTokenVerifier(km, issuer=ISSUER, clock=_clock()).verify(id_token, client_id="spa")
    digest, half = HASHES[km.alg]
    expected = digest(access.encode("ascii")).digest()[:half]
    assert base64.urlsafe_b64decode(claims["at_hash"] + "==") == expected
    assert claims["at_hash"] == base64.urlsafe_b64encode(expected).rstrip(b"=").decode()
