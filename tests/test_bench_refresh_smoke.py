"""``benchmarks/bench_refresh.py`` still runs: a very short pass must exit 0 and print every
row with its four rates and both ratios (on PostgreSQL too when the suite has one)."""

from __future__ import annotations

import os
import re

from .conftest import run_benchmark

ROW = re.compile(r"^(.+?) +([18]) +((?:[\d,]+ +){4})(\d+\.\d\d) +(\d+\.\d\d)$")


def test_a_short_pass_prints_every_cell_with_its_ratios() -> None:
    lines = run_benchmark(
        "bench_refresh.py", "--seconds", "0.05", "--rounds", "1", "--max", "5", timeout=300
    )
    assert lines[1].split()[-2:] == ["a/c", "b/c"]
    cells = {(m[1], m[2]) for m in map(ROW.match, lines) if m is not None}
    expected = {
        (db, callers)
        for db in ("SQLite WAL sync=FULL", "SQLite WAL sync=NORMAL")
        for callers in ("1", "8")
    }
    if os.environ.get("TOKENSMITH_TEST_PG_URL"):
        expected |= {("PostgreSQL", "1"), ("PostgreSQL", "8")}
    assert cells == expected
