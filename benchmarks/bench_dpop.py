"""DPoP (RFC 9449) costs against their limits, in one run (issue #14):

* ``proof verify``: ``ProofVerifier.verify`` of a fresh ES256 proof (size checks, header,
  claims, htm/htu/iat, replay cache) against a raw ``cryptography`` ECDSA verify of the same
  signing input and signature (target >= 0.75);
* ``resource check``: ``BearerGuard.authenticate_sync`` of ``Authorization: DPoP`` with its
  proof (access token verification, proof, ``ath``, ``cnf.jkt`` and replay) against the raw
  cost of its two signature verifications (target >= 0.70);
* ``refresh + DPoP``: ``Tokensmith.refresh`` on a SQLite file with a proof each time
  (verification, family binding, the jti kept in the rotation's transaction) against the
  same refresh without DPoP (target >= 0.75).

Each case is warmed up, then runs ``--rounds`` rounds of ``--seconds`` (or ``--max``
operations) per side, the two sides alternating in chunks of 16 operations; the ratio is
the median of the per-round ratios. Every proof is made beforehand (by ``cryptography``),
each with its own jti.

    .venv/bin/python benchmarks/bench_dpop.py [--seconds 1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tokensmith import Settings, Tokensmith
from tokensmith.clock import SystemClock
from tokensmith.dpop import ProofVerifier
from tokensmith.http.resource import BearerGuard
from tokensmith.http.resource_dpop import ResourceRequest
from tokensmith.keys.algorithms import ALGORITHMS
from tokensmith.keys.jwk import public_members

ISSUER = "https://bench.example"
TOKEN_URL = f"{ISSUER}/token"
API_URL = "https://api.bench.example/items"
TARGETS = {"proof verify": 0.75, "resource check": 0.70, "refresh + DPoP": 0.75}
ES256 = ALGORITHMS["ES256"]
ECDSA = ec.ECDSA(hashes.SHA256())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Client:
    """A DPoP client key and the proofs it signs, each with its own jti."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": public_members(self.key.public_key())}
        self.header = b64(json.dumps(header, separators=(",", ":")).encode())

    def proofs(self, count: int, htm: str, htu: str, access_token: str | None = None) -> list[str]:
        ath = None if access_token is None else b64(hashlib.sha256(access_token.encode()).digest())
        made = []
        for _ in range(count):
            claims = {
                "jti": secrets.token_urlsafe(12),
                "htm": htm,
                "htu": htu,
                "iat": int(time.time()),
            }
            if ath is not None:
                claims["ath"] = ath
            signing_input = f"{self.header}.{b64(json.dumps(claims).encode())}".encode()
            made.append(f"{signing_input.decode()}.{b64(ES256.jws.sign(signing_input, self.key))}")
        return made


def _raw_verify(token: str, public: ec.EllipticCurvePublicKey) -> Callable[[], None]:
    """cryptography's ECDSA verify of ``token``'s signing input and signature, DER ready."""
    signing_input, _, sig = token.rpartition(".")
    raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    data = signing_input.encode()
    return lambda: public.verify(der, data, ECDSA)


CHUNK = 16


def _rates(
    ours: Callable[[int], None], limit: Callable[[int], None], seconds: float, most: int
) -> tuple[float, float]:
    """Both sides' rates, run in alternating chunks of ``CHUNK`` operations for ``seconds``
    each (or ``most`` operations): load from other processes of a shared machine falls on
    both sides alike instead of on whichever ran during it."""
    spent = [0.0, 0.0]
    done = 0
    while done < most and min(spent) < seconds:
        sides = ((0, ours), (1, limit))
        for side, op in sides if done // CHUNK % 2 else sides[::-1]:
            start = time.perf_counter()
            for i in range(done, done + CHUNK):
                op(i)
            spent[side] += time.perf_counter() - start
        done += CHUNK
    return done / spent[0], done / spent[1]


Case = tuple[Callable[[int], None], Callable[[int], None]]  # (tokensmith, limit) per op index


def proof_case(count: int) -> Case:
    client = Client()
    proofs = client.proofs(count, "POST", TOKEN_URL)
    verifier = ProofVerifier()
    raws = [_raw_verify(proof, client.key.public_key()) for proof in proofs]
    return (lambda i: verifier.verify(proofs[i], htm="POST", htu=TOKEN_URL)), (lambda i: raws[i]())


def resource_case(ts: Tokensmith, count: int) -> Case:
    client = Client()
    jkt = ProofVerifier().verify(client.proofs(1, "GET", API_URL)[0], htm="GET", htu=API_URL).jkt
    token = ts.issue(subject="alice", client_id="spa", audience="api", dpop_jkt=jkt).access_token
    proofs = client.proofs(count, "GET", API_URL, access_token=token)
    guard = BearerGuard(audience="api", keys=ts.keys, issuer=ISSUER)
    authorization = [f"DPoP {token}"]
    head = token.split(".")[0]
    kid = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"]
    signer_key = ts.keys.verification_key(kid)
    assert signer_key is not None and isinstance(signer_key.public_key, ec.EllipticCurvePublicKey)
    raw_token = _raw_verify(token, signer_key.public_key)
    raw_proofs = [_raw_verify(proof, client.key.public_key()) for proof in proofs]

    def check(i: int) -> None:
        request = ResourceRequest("GET", API_URL, (proofs[i],))
        guard.authenticate_sync(authorization, request=request)

    def raw(i: int) -> None:
        raw_token()
        raw_proofs[i]()

    return check, raw


def refresh_case(ts: Tokensmith, count: int) -> Case:
    client = Client()
    proofs = client.proofs(count + 1, "POST", TOKEN_URL)
    bound = {"token": ts.issue(subject="bob", client_id="spa").refresh_token or ""}
    plain = {"token": ts.issue(subject="carol", client_id="spa").refresh_token or ""}

    def with_dpop(i: int) -> None:
        bound["token"] = (
            ts.refresh(bound["token"], client_id="spa", dpop_proof=proofs[i]).refresh_token or ""
        )

    def without(_i: int) -> None:
        plain["token"] = ts.refresh(plain["token"], client_id="spa").refresh_token or ""

    return with_dpop, without


def measure(
    name: str, make: Callable[[int], Case], args: argparse.Namespace
) -> tuple[float, float, float]:
    ratios, ours, limits = [], [], []
    for _ in range(args.rounds):
        ts_op, limit_op = make(args.max + 40)
        for i in range(20):  # warm-up: caches, the first binding, the statements
            ts_op(args.max + i)
            limit_op(args.max + i)
        our_rate, limit_rate = _rates(ts_op, limit_op, args.seconds, args.max)
        ours.append(our_rate)
        limits.append(limit_rate)
        ratios.append(our_rate / limit_rate)
    return statistics.median(ours), statistics.median(limits), statistics.median(ratios)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per side per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max", type=int, default=20_000, help="operations per side per round")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            issuer=ISSUER,
            database_url=f"sqlite:///{Path(tmp) / 'bench.db'}",
            keys_dir=str(Path(tmp) / "keys"),
            refresh_secret="bench-secret-" + "s" * 32,
        )
        ts = Tokensmith(settings, clock=SystemClock())
        ts.setup()
        ts.register_client("spa", confidential=False, audiences=("api",))
        ts.register_client("backend", confidential=True, grant_types=("client_credentials",))
        cases: dict[str, Callable[[int], Case]] = {
            "proof verify": proof_case,
            "resource check": lambda count: resource_case(ts, count),
            "refresh + DPoP": lambda count: refresh_case(ts, count),
        }
        header = f"{'case':<16} {'ops/s':>10} {'limit ops/s':>12} {'ratio':>6} {'target':>6}"
        print("DPoP costs against their limits (ES256; one run; higher is better)")
        print(header)
        print("-" * len(header))
        missed = []
        for name, make in cases.items():
            ours, limit, ratio = measure(name, make, args)
            print(f"{name:<16} {ours:>10,.0f} {limit:>12,.0f} {ratio:>6.2f} {TARGETS[name]:>6.2f}")
            if ratio < TARGETS[name]:
                missed.append(name)
        print("limits: proof verify = raw ECDSA verify of the same bytes; resource check = its")
        print("two raw verifies (token, proof); refresh + DPoP = the same refresh without DPoP")
        print(f"targets missed: {', '.join(missed) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
