"""The benchmark script still runs: a short ES256 pass must exit 0 and print its table."""

from __future__ import annotations

import re

from .conftest import run_benchmark
from .softhsm import softhsm_module


def test_quick_benchmark_prints_a_table_for_every_implementation() -> None:
    lines = run_benchmark("bench_tokens.py", "--quick", "--algs", "ES256")
    assert any(line.split()[:3] == ["alg", "op", "impl"] for line in lines if line.strip())
    for impl in ("raw", "tokensmith", "pyjwt", "joserfc"):
        row = re.compile(rf"\b{impl} +[\d,]+ +[\d.]+ +[\d.]+")  # name, ops/s, us/op, ratio
        assert sum(bool(row.search(line)) for line in lines) == 2, impl  # mint and verify
    assert any("targets missed:" in line for line in lines)
    # Verifying beside a RemoteRevocations of 100,000 entries, with its ratio to tokensmith.
    assert sum(bool(re.search(r"\bremote +[\d,]+ +[\d.]+ +[\d.]+", line)) for line in lines) == 1
    assert any(re.match(r"remote verify \(100,000 .*: ES256 [\d.]+$", line) for line in lines)
    if softhsm_module() is None:
        assert any(line.startswith("note: no pkcs11 rows") for line in lines)
    else:  # signing in the SoftHSM2 token, beside local signing, with the ratio printed
        row = re.compile(r"\bpkcs11 +[\d,]+ +[\d.]+ +[\d.]+")
        assert sum(bool(row.search(line)) for line in lines) == 1  # mint only
        assert any(re.match(r"pkcs11 mint ÷ local .*: ES256 [\d.]+$", line) for line in lines)
