"""``benchmarks/bench_dpop.py`` still runs: a very short pass must exit 0 and print its three
cases, each with both rates, the ratio and the target."""

from __future__ import annotations

import re

from .conftest import run_benchmark

ROW = re.compile(
    r"^(proof verify|resource check|refresh \+ DPoP) +[\d,]+ +[\d,]+ +\d+\.\d\d +0\.7[05]$"
)


def test_a_short_pass_prints_every_case_with_its_ratio_and_target() -> None:
    lines = run_benchmark(
        "bench_dpop.py", "--seconds", "0.05", "--rounds", "1", "--max", "64", timeout=300
    )
    cases = {m[1] for m in map(ROW.match, lines) if m is not None}
    assert cases == {"proof verify", "resource check", "refresh + DPoP"}
    assert any(line.startswith("targets missed:") for line in lines)
