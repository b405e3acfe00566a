"""``import tokensmith`` works where ``fcntl`` does not exist (Windows; issue #12 item 7)
and loads no framework. Only the file key store and SQLite migrations take a file lock,
and only when they lock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_WITHOUT_FCNTL = """
import sys
sys.modules["fcntl"] = None  # what `import fcntl` finds on Windows: ImportError
import tokensmith, tokensmith.cli, tokensmith.http, tokensmith.store.sql
from tokensmith.filelock import exclusive_lock
try:
    with exclusive_lock(sys.argv[1]):
        pass
except ImportError:
    print("no lock without fcntl")
"""


def test_every_package_imports_without_fcntl(tmp_path: Path) -> None:
    lock = str(tmp_path / "x.lock")
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_FCNTL, lock], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "no lock without fcntl"


def test_import_tokensmith_loads_no_framework() -> None:
    """ARCHITECTURE.md "Import rules": the facade imports the SQL store lazily."""
    code = (
        "import sys, tokensmith; "
        "print(sorted({'sqlalchemy', 'starlette', 'click', 'uvicorn'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr
