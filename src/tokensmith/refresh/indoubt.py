"""Rotations whose commit was cut off (README "High availability"; issue #16).

When the connection dies after ``COMMIT`` was sent, the rotation may or may not have
happened, and on a failover the new primary is the only one that knows. The instance still
holds the child it minted, whose hash is new and random: it exists in the store only if
this rotation committed. So the answer is read back from the store, once it is reachable
again: the child if it is there; a retryable error if not, since then the parent is still
unused and the client's retry is an ordinary rotation, never judged as reuse.
"""

from __future__ import annotations

import logging
import time

from tokensmith.errors import TemporarilyUnavailable
from tokensmith.store.protocols import RefreshStore

logger = logging.getLogger("tokensmith.refresh")

# Between reads while no primary accepts connections (a failover takes seconds).
POLL_INTERVAL = 0.5


def committed(store: RefreshStore, child_hash: bytes, *, timeout: float) -> bool:
    """Whether the token ``child_hash`` was stored, read as last committed. Waits up to
    ``timeout`` seconds (plus one connect timeout) for the store to answer; raises
    ``TemporarilyUnavailable`` if it never did, the outcome still unknown."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return store.find_token(child_hash) is not None
        except TemporarilyUnavailable:
            if time.monotonic() + POLL_INTERVAL > deadline:
                logger.error("an in-doubt rotation is still unresolved after %.1f s", timeout)
                raise
        time.sleep(POLL_INTERVAL)
