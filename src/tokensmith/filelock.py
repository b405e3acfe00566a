"""An exclusive advisory lock on a file, for the file key store and SQLite migrations.

``fcntl`` is POSIX-only, so it is imported when a lock is taken: ``import tokensmith``
(and the SQL key store, which needs no file lock) keeps working on Windows.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created with mode 0600) for the block."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
