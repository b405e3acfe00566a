"""Mint and verify throughput: tokensmith against bare PyJWT, joserfc and raw ``cryptography``.

For every algorithm, in one run, four implementations mint and verify the same RFC 9068
access-token claim set:

* ``tokensmith``: ``mint_access_token(km.signer(), ...)`` and
  ``AccessTokenVerifier.verify(token, audience=...)`` with every claim check;
* ``pyjwt``: ``jwt.encode`` / ``jwt.decode`` (algorithms pinned, audience, issuer, leeway and a
  ``require`` list);
* ``joserfc``: ``jwt.encode`` / ``jwt.decode`` plus ``JWTClaimsRegistry.validate``;
* ``raw``: ``cryptography`` alone signing/verifying the same signing-input bytes (ECDSA with
  its native DER signature, Ed25519, RSA PKCS#1 v1.5 and PSS), with padding and hash objects
  built once. It is the floor: every ratio is ``impl ops/s ÷ raw ops/s``;
* ``pkcs11`` (mint only, when SoftHSM2 is installed): ``mint_access_token`` with the signer
  of the PKCS#11 key store, the key made in a fresh SoftHSM2 token (``tests/softhsm.py``),
  printed beside local signing with its ratio to ``tokensmith``. SoftHSM2 signs in this
  process, so this is the cost of the PKCS#11 path, not of a hardware HSM's latency;
* ``remote`` (verify only): ``tokensmith`` verification as a resource server does it with
  ``RemoteRevocations`` holding ``REMOTE_ENTRIES`` revocations (read through its real
  ``GET /revocations`` client from an in-process transport): the keys lookup skips revoked
  kids and the claims are checked against the set, printed with its ratio to ``tokensmith``.
  The check is a few dict lookups, so the ratio should stay within noise of 1.

Method (ARCHITECTURE.md "Cross-cutting choices"): each (alg, op, impl) cell is warmed up and
calibrated to a fixed iteration count; then ``--repeats`` rounds run every cell once, the four
implementations of one (alg, op) taking turns in short slices (ABBA order, rotated each round)
so CPU frequency drift and neighbours hit all of them alike; ``--budget`` bounds the wall time.
Ops/s is the median over rounds; a ratio is the median of the per-round ratios to raw measured
in the same round. The GC is paused inside timed loops, as ``timeit`` does. Time
is this process's CPU time unless ``--clock wall``: on a shared machine the wall clock also
counts the time neighbours hold the CPU.

    .venv/bin/python benchmarks/bench_tokens.py            # full run, about 2 minutes
    .venv/bin/python benchmarks/bench_tokens.py --quick --algs ES256
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
# tests.softhsm: the SoftHSM2 token the pkcs11 rows sign with.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cryptography
import httpx
import joserfc
import jwt as pyjwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from joserfc import jwk as jrfc_jwk
from joserfc import jwt as jrfc_jwt

from tokensmith.clock import ManualClock, SystemClock
from tokensmith.events import EventBus
from tokensmith.http.remote_revocations import RemoteRevocations
from tokensmith.keys.lifecycle import KeyManager
from tokensmith.keys.signer import LocalSigner
from tokensmith.keys.store import FileKeyStore, KeyStore
from tokensmith.settings import Settings
from tokensmith.tokens.mint import AccessTokenClaims, mint_access_token, new_jti
from tokensmith.tokens.verify import AccessTokenVerifier

ALGS = ("ES256", "ES384", "EdDSA", "RS256", "PS256")
IMPLS = ("raw", "tokensmith", "pyjwt", "joserfc")
HSM = "pkcs11"  # an extra mint row, beside "tokensmith" (local signing)
REMOTE = "remote"  # an extra verify row: with RemoteRevocations holding REMOTE_ENTRIES
REMOTE_ENTRIES = 100_000
OPS = ("mint", "verify")
ISSUER = "https://as.example.com"
AUDIENCE = "https://api.example.com"
REQUIRED = ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"]
LEEWAY = 60
# Ratio to raw, tokensmith only (the brief's targets).
TARGETS: dict[tuple[str, str], float] = {
    ("ES256", "mint"): 0.75,
    ("EdDSA", "mint"): 0.75,
    ("RS256", "mint"): 0.97,
    ("PS256", "mint"): 0.97,
    ("ES256", "verify"): 0.80,
    ("EdDSA", "verify"): 0.85,
    ("RS256", "verify"): 0.65,
    ("PS256", "verify"): 0.65,
}

Op = Callable[[], object]


@dataclass
class Cell:
    fn: Op
    n: int = 1
    ops_per_s: list[float] = field(default_factory=list)


def _raw_ops(alg: str, private: Any, signing_input: bytes) -> tuple[Op, Op]:
    if alg in ("ES256", "ES384"):
        ecdsa = ec.ECDSA(hashes.SHA256() if alg == "ES256" else hashes.SHA384())
        der = private.sign(signing_input, ecdsa)
        pub = private.public_key()
        return (
            lambda: private.sign(signing_input, ecdsa),
            lambda: pub.verify(der, signing_input, ecdsa),
        )
    if alg == "EdDSA":
        sig = private.sign(signing_input)
        pub = private.public_key()
        return lambda: private.sign(signing_input), lambda: pub.verify(sig, signing_input)
    sha256 = hashes.SHA256()
    pad: padding.AsymmetricPadding = (
        padding.PKCS1v15()
        if alg == "RS256"
        else padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    )
    sig = private.sign(signing_input, pad, sha256)
    pub = private.public_key()
    return (
        lambda: private.sign(signing_input, pad, sha256),
        lambda: pub.verify(sig, signing_input, pad, sha256),
    )


def _keys(store: KeyStore, keys_dir: str, alg: str, now: int) -> KeyManager:
    settings = Settings(issuer=ISSUER, keys_dir=keys_dir, signing_alg=alg)
    km = KeyManager(store, settings, ManualClock(now), EventBus())
    km.ensure_active()
    return km


def open_hsm(directory: str) -> Callable[[str], KeyStore] | None:
    """A fresh SoftHSM2 token and a function opening a PKCS#11 key store on it for a keys
    directory; None (with a note) when SoftHSM2 or python-pkcs11 is missing."""
    from tests.softhsm import init_token, softhsm_module

    module = softhsm_module()
    try:
        from tokensmith.keys.pkcs11 import Pkcs11KeyStore
    except ImportError:
        module = None
    if module is None:
        print("note: no pkcs11 rows: softhsm2 or python-pkcs11 is not installed\n")
        return None
    token = init_token(Path(directory), "bench-tokens", module)
    return lambda keys_dir: Pkcs11KeyStore(token.module, token.label, token.pin, keys_dir)


def _feed_page(request: httpx.Request) -> httpx.Response:
    """``GET /revocations?since=N`` over ``REMOTE_ENTRIES`` made-up entries of every kind
    (none concerns the benchmark's token), a thousand a page."""
    since = int(request.url.params.get("since", "0"))
    kinds = ("jti", "family", "subject", "client_disabled", "kid")
    exp = time.time() + 86_400
    ids = range(since + 1, min(since + 1000, REMOTE_ENTRIES) + 1)
    entries = [
        {"id": i, "kind": kinds[i % 5], "key": f"k{i}", "at": time.time(), "exp": exp} for i in ids
    ]
    cursor = ids[-1] if entries else since
    body = {"cursor": cursor, "more": cursor < REMOTE_ENTRIES, "entries": entries}
    return httpx.Response(200, json=body)


def remote_revocations() -> RemoteRevocations:
    feed = RemoteRevocations(
        ISSUER,
        client_id="rs",
        client_secret="-",
        max_staleness=86_400,  # the benchmark outlasts the default bound
        client=httpx.Client(transport=httpx.MockTransport(_feed_page)),
    )
    feed.sync()
    assert len(feed) == REMOTE_ENTRIES
    return feed


def build(
    alg: str,
    keys_dir: str,
    hsm: Callable[[str], KeyStore] | None = None,
    feed: RemoteRevocations | None = None,
) -> dict[tuple[str, str], Op]:
    """The eight (impl, op) callables for ``alg`` (one more with ``hsm``: PKCS#11 minting;
    one more with ``feed``: verifying against it), each checked once for correctness."""
    now = int(time.time())
    km = _keys(FileKeyStore(keys_dir), keys_dir, alg, now)
    signer = km.signer()
    assert isinstance(signer, LocalSigner)
    private: Any = signer.private_key  # the benchmark's own key; never do this in code
    claims = AccessTokenClaims(
        "248289761001", "s6BhdRkqt3", AUDIENCE, "openid profile email", now, now + 900,
        new_jti(), "08a5019c-17e1-4977-8f42-65a12843ea02",
    )  # fmt: skip
    payload = {
        "iss": ISSUER,
        "sub": claims.subject,
        "aud": AUDIENCE,
        "exp": claims.expires_at,
        "iat": now,
        "nbf": now,
        "jti": claims.jti,
        "client_id": claims.client_id,
        "scope": claims.scope,
        "sid": claims.session_id,
    }
    headers = {"kid": signer.kid, "typ": "at+jwt"}

    verifier = AccessTokenVerifier(km, issuer=ISSUER, clock=SystemClock(), leeway=LEEWAY)
    ts_token = mint_access_token(km.signer(), ISSUER, claims)

    pj_token = pyjwt.encode(payload, private, algorithm=alg, headers=headers)
    pj_pub = private.public_key()

    # joserfc deprecates "EdDSA" (warning on every call); RFC 9864's "Ed25519" is the same maths.
    jr_alg = "Ed25519" if alg == "EdDSA" else alg
    kty = {"ES256": "EC", "ES384": "EC", "EdDSA": "OKP"}.get(alg, "RSA")
    jr_priv = jrfc_jwk.import_key(private, kty)  # type: ignore[call-overload]
    jr_pub = jrfc_jwk.import_key(private.public_key(), kty)  # type: ignore[call-overload]
    jr_header = {"alg": jr_alg, **headers}
    jr_algs = [jr_alg]
    jr_token = jrfc_jwt.encode(jr_header, payload, jr_priv, algorithms=jr_algs)
    jr_registry = jrfc_jwt.JWTClaimsRegistry(
        leeway=LEEWAY,
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": AUDIENCE},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        jti={"essential": True},
        client_id={"essential": True},
    )

    def jr_verify() -> object:
        token = jrfc_jwt.decode(jr_token, jr_pub, algorithms=jr_algs)
        jr_registry.validate(token.claims)
        return token.claims

    raw_sign, raw_verify = _raw_ops(alg, private, ts_token.rpartition(".")[0].encode("ascii"))
    ops: dict[tuple[str, str], Op] = {
        ("raw", "mint"): raw_sign,
        ("raw", "verify"): raw_verify,
        ("tokensmith", "mint"): lambda: mint_access_token(km.signer(), ISSUER, claims),
        ("tokensmith", "verify"): lambda: verifier.verify(ts_token, audience=AUDIENCE),
        ("pyjwt", "mint"): lambda: pyjwt.encode(payload, private, algorithm=alg, headers=headers),
        ("pyjwt", "verify"): lambda: pyjwt.decode(
            pj_token,
            pj_pub,
            algorithms=[alg],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=LEEWAY,
            options={"require": REQUIRED},
        ),
        ("joserfc", "mint"): lambda: jrfc_jwt.encode(
            jr_header, payload, jr_priv, algorithms=jr_algs
        ),
        ("joserfc", "verify"): jr_verify,
    }
    if hsm is not None:
        hsm_dir = os.path.join(keys_dir, HSM)
        hsm_keys = _keys(hsm(hsm_dir), hsm_dir, alg, now)
        hsm_verifier = AccessTokenVerifier(hsm_keys, issuer=ISSUER, clock=SystemClock())
        got = hsm_verifier.verify(
            mint_access_token(hsm_keys.signer(), ISSUER, claims), audience=AUDIENCE
        )
        assert got["sub"] == claims.subject, HSM
        ops[HSM, "mint"] = lambda: mint_access_token(hsm_keys.signer(), ISSUER, claims)
    if feed is not None:
        remote = AccessTokenVerifier(
            feed.keys(km), issuer=ISSUER, clock=SystemClock(), leeway=LEEWAY
        )

        def remote_verify() -> object:
            claims = remote.verify(ts_token, audience=AUDIENCE)
            assert not feed.check(claims)
            return claims

        ops[REMOTE, "verify"] = remote_verify
    # Every implementation must produce and accept the same claims, or the race is unfair.
    for impl in ("tokensmith", "pyjwt", "joserfc", *((REMOTE,) if feed else ())):
        got = ops[impl, "verify"]()
        assert isinstance(got, dict) and got["sub"] == claims.subject, impl
    assert ts_token.count(".") == 2 and pj_token.count(".") == 2 and jr_token.count(".") == 2
    return ops


# CPU time of this process by default: on a shared machine the wall clock also counts the
# time other processes hold the CPU, which hits whichever cell happens to run then.
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
_clock = CLOCKS["cpu"]


def _time(fn: Op, n: int) -> float:
    loop = itertools.repeat(None, n)
    clock = _clock
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = clock()
        for _ in loop:
            fn()
        return clock() - t0
    finally:
        if gc_was_enabled:
            gc.enable()


def calibrate(fn: Op, warmup_s: float, batch_s: float) -> int:
    """Warm ``fn`` up for ``warmup_s`` and return the count that takes about ``batch_s``."""
    n, spent = 1, 0.0
    while spent < warmup_s:
        spent = _time(fn, n)
        if spent < warmup_s:
            n *= 2
    per_op = spent / n
    return max(3, round(batch_s / per_op))


def _impls(cells: dict[tuple[str, str, str], Cell], alg: str, op: str) -> tuple[str, ...]:
    """The implementations measured for (alg, op): ``IMPLS``, then ``pkcs11`` and
    ``remote`` if present."""
    return tuple(impl for impl in (*IMPLS, HSM, REMOTE) if (alg, op, impl) in cells)


def run(
    algs: list[str],
    repeats: int,
    warmup_s: float,
    batch_s: float,
    chunks: int,
    budget_s: float,
    with_hsm: bool = True,
) -> dict[tuple[str, str, str], Cell]:
    """Each round gives every cell ``batch_s`` in ``chunks`` slices, the implementations
    of one (alg, op) taking turns slice by slice (forward, then backward, ABBA style) so a
    burst of load or a frequency step lands on all of them. Stops early, after at least three
    rounds, once ``budget_s`` of wall time is spent."""
    started = time.perf_counter()
    cells: dict[tuple[str, str, str], Cell] = {}
    with tempfile.TemporaryDirectory(prefix="bench-tokens-") as tmp:
        hsm = open_hsm(os.path.join(tmp, "softhsm")) if with_hsm else None
        feed = remote_revocations()
        for alg in algs:
            keys_dir = os.path.join(tmp, alg)
            os.mkdir(keys_dir)
            for (impl, op), fn in build(alg, keys_dir, hsm, feed).items():
                cells[alg, op, impl] = Cell(fn)
        for (alg, op, _), cell in cells.items():
            # RSA signing is ~1.5 ms: twice the time keeps its few hundred samples a round
            # from being all noise against a 0.97 target.
            scale = 2 if op == "mint" and alg in ("RS256", "PS256") else 1
            cell.n = calibrate(cell.fn, warmup_s, batch_s * scale / chunks)
        for r in range(repeats):
            for alg in algs:
                for op in OPS:
                    impls = _impls(cells, alg, op)
                    order = impls[r % len(impls) :] + impls[: r % len(impls)]
                    row = [cells[alg, op, impl] for impl in order]
                    spent = [0.0] * len(row)
                    for k in range(chunks):
                        for i in range(len(row)) if k % 2 == 0 else reversed(range(len(row))):
                            spent[i] += _time(row[i].fn, row[i].n)
                    for cell, t in zip(row, spent, strict=True):
                        cell.ops_per_s.append(cell.n * chunks / t)
            if r >= 2 and time.perf_counter() - started > budget_s:
                break
    return cells


def report(cells: dict[tuple[str, str, str], Cell], algs: list[str]) -> list[str]:
    """Print the table; return the missed targets."""
    missed: list[str] = []
    print(
        f"{'alg':<6} {'op':<6} {'impl':<10} {'ops/s':>9} {'us/op':>8} {'x raw':>6} "
        f"{'target':>7} {'met':>4}"
    )
    print("-" * 62)
    for alg in algs:
        for op in OPS:
            raw = cells[alg, op, "raw"].ops_per_s
            for impl in _impls(cells, alg, op):
                runs = cells[alg, op, impl].ops_per_s
                ops = statistics.median(runs)
                ratio = _ratio(runs, raw)
                target = TARGETS.get((alg, op)) if impl == "tokensmith" else None
                met = ""
                if target is not None:
                    met = "yes" if ratio >= target else "NO"
                    if ratio < target:
                        missed.append(f"{alg} {op} {ratio:.2f} < {target:.2f}")
                print(
                    f"{alg if impl == 'raw' and op == 'mint' else '':<6} "
                    f"{op if impl == 'raw' else '':<6} {impl:<10} {ops:>9,.0f} "
                    f"{1e6 / ops:>8.1f} {ratio:>6.3f} "
                    f"{f'>={target:.2f}' if target is not None else '':>7} {met:>4}"
                )
        print()
    hsm_ratios = []
    for alg in algs:
        if (alg, "mint", HSM) in cells:
            local = cells[alg, "mint", "tokensmith"].ops_per_s
            hsm_ratios.append(f"{alg} {_ratio(cells[alg, 'mint', HSM].ops_per_s, local):.3f}")
    if hsm_ratios:
        print(f"{HSM} mint ÷ local (tokensmith) mint: " + ", ".join(hsm_ratios))
    remote = [
        f"{alg} {_ratio(cells[alg, 'verify', REMOTE].ops_per_s, local):.3f}"
        for alg in algs
        if (alg, "verify", REMOTE) in cells
        for local in [cells[alg, "verify", "tokensmith"].ops_per_s]
    ]
    if remote:
        print(
            f"{REMOTE} verify ({REMOTE_ENTRIES:,} revocations held) ÷ tokensmith verify: "
            + ", ".join(remote)
        )
    return missed


def _ratio(runs: list[float], base: list[float]) -> float:
    """The median of the per-round ratios (rounds measured the two side by side)."""
    return statistics.median(a / b for a, b in zip(runs, base, strict=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (seconds)")
    parser.add_argument(
        "--algs", default=",".join(ALGS), help=f"comma-separated subset of {','.join(ALGS)}"
    )
    parser.add_argument("--repeats", type=int, default=None, help="rounds (default 7, quick 3)")
    parser.add_argument(
        "--budget", type=float, default=150.0, help="wall seconds after which no new round starts"
    )
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="cpu",
        help="cpu: process CPU time (default, robust to neighbours); wall: perf_counter",
    )
    parser.add_argument(
        "--no-hsm", action="store_true", help=f"skip the {HSM} rows (SoftHSM2 signing)"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a tokensmith target is missed"
    )
    args = parser.parse_args(argv)
    algs = [a.strip() for a in args.algs.split(",") if a.strip()]
    unknown = sorted(set(algs) - set(ALGS))
    if unknown or not algs:
        parser.error(f"unknown algorithms {unknown}; choose from {','.join(ALGS)}")
    global _clock
    _clock = CLOCKS[args.clock]
    repeats = args.repeats or (3 if args.quick else 7)
    # Full: 5 algs x 8 cells (RSA mint x2) x 7 rounds x 0.25 s ~ 84 s CPU, plus warm-up and
    # RSA keygen; --budget stops new rounds when neighbours stretch the wall time.
    warmup_s, batch_s, chunks = (0.01, 0.02, 2) if args.quick else (0.1, 0.25, 25)

    load = os.getloadavg()
    print(
        f"python {platform.python_version()} | cryptography {cryptography.__version__} | "
        f"PyJWT {pyjwt.__version__} | joserfc {joserfc.__version__} | "
        f"{os.cpu_count()} CPUs | load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(
        f"up to {repeats} rounds x ~{batch_s:.2f} s {args.clock} time per cell in {chunks} "
        f"interleaved slices; median ops/s, ratio = median of per-round ratios to raw\n"
    )
    started = time.perf_counter()
    cells = run(algs, repeats, warmup_s, batch_s, chunks, args.budget, not args.no_hsm)
    missed = report(cells, algs)
    load = os.getloadavg()
    print(
        f"{len(next(iter(cells.values())).ops_per_s)} rounds | "
        f"elapsed {time.perf_counter() - started:.0f} s wall | load at end "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print("targets missed: " + ("; ".join(missed) if missed else "none"))
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
