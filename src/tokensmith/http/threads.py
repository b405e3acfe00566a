"""The hop from the event loop to a worker thread for the synchronous facade.

asyncio's own executor hop does about half the event-loop work of anyio's ``to_thread``
(no cancel scope, capacity limiter or checkpoints per call); on the token endpoint that is
a tenth of the request. The service therefore runs on an asyncio loop (uvicorn's).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

# As many threads as anyio's default limiter allows: database calls block in them.
_POOL = ThreadPoolExecutor(max_workers=40, thread_name_prefix="tokensmith-http")


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a worker thread; the caller's task waits without blocking the loop.
    A cancelled request does not stop the call (its effects, like a rotation, still happen:
    the client sees a lost response, which the refresh rules already handle)."""
    return await asyncio.get_running_loop().run_in_executor(_POOL, fn, *args)
