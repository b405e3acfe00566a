"""The benchmark script still runs: a short ES256 pass must exit 0 and print its table."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_tokens.py"


def test_quick_benchmark_prints_a_table_for_every_implementation() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--algs", "ES256"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.split()[:3] == ["alg", "op", "impl"] for line in lines if line.strip())
    for impl in ("raw", "tokensmith", "pyjwt", "joserfc"):
        row = re.compile(rf"\b{impl} +[\d,]+ +[\d.]+ +[\d.]+")  # name, ops/s, us/op, ratio
        assert sum(bool(row.search(line)) for line in lines) == 2, impl  # mint and verify
    assert any("targets missed:" in line for line in lines)
