"""The HTTP benchmark still runs: a ``--quick`` pass must exit 0 and print its table.

Needs Debian's ``wrk`` (``apt-get install -y wrk``); without it the test is skipped.
"""

from __future__ import annotations

import re
import shutil

import pytest

from .conftest import run_benchmark


@pytest.mark.slow
def test_quick_http_benchmark_prints_every_row_and_ratio() -> None:
    if shutil.which("wrk") is None:
        reason = "wrk is not installed (apt-get install -y wrk)"
        print(f"skipped: {reason}")
        pytest.skip(reason)
    lines = run_benchmark("bench_http.py", "--quick")
    assert any(line.split()[:3] == ["row", "req/s", "errors"] for line in lines)
    for row in ("constant", "jwks", "refresh http", "refresh facade"):
        pattern = re.compile(rf"^{row} +[\d,]+ +0 ")  # name, req/s, no failed request
        assert sum(bool(pattern.search(line)) for line in lines) == 1, row
    for ratio in ("jwks / constant", "refresh http / refresh facade"):
        assert any(re.match(rf"{ratio} +[\d.]+ +>= ", line) for line in lines), ratio
    assert any(line.startswith("targets missed:") for line in lines)
