"""``GET /revocations`` and ``GET /revocations/stream``: the revocation log for remote
resource servers (docs/resource-server.md "Revocation feed").

Registered confidential clients only, authenticated like ``/introspect``
(``client_secret_basic``). Each entry is what is revoked and can still verify, with the
time ``exp`` after which it no longer matters (:mod:`tokensmith.revocation.log`):

- ``GET /revocations?since=<cursor>``: the live entries after ``since`` (0: all), at most
  ``PAGE`` of them (``more`` says another page follows), and the ``cursor`` to send next
  time. The ``ETag`` names the range, so ``If-None-Match`` answers 304 when nothing new.
- ``GET /revocations/stream``: server-sent events (HTML Living Standard §9.2): each entry
  an ``event: revocation`` with its id, then every new one as this instance learns it (at
  once for its own, as they commit for the others' through the feed); an
  ``event: heartbeat`` with the cursor every ``HEARTBEAT`` s, by which a verifier knows
  its view is current. ``Last-Event-ID`` (or ``?since=``) resumes after a reconnect.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from tokensmith.errors import InvalidRequest
from tokensmith.facade import Tokensmith
from tokensmith.http.clientauth import authenticate, require_resource_server
from tokensmith.http.errors import NO_STORE
from tokensmith.http.threads import in_thread
from tokensmith.revocation.log import LogEntry

PAGE = 1000
HEARTBEAT = 5.0
# How often a stream looks at this instance's cursor (a memory read): the delay it adds.
TICK = 0.05
_MAX_CURSOR = 2**63 - 1


def _ts(request: Request) -> Tokensmith:
    ts: Tokensmith = request.app.state.tokensmith
    return ts


def _resource_server(request: Request) -> str:
    """The caller must be a registered, enabled confidential client, one of the resource
    servers when the settings name them (like /introspect); returns its id."""
    ts = _ts(request)
    client = authenticate(request, {}, ts.clients, ts.clock.now())
    require_resource_server(client, ts.settings, "the revocation feed")
    return client.client_id


def _still_allowed(ts: Tokensmith, client_id: str) -> bool:
    client = ts.clients.get_client(client_id)
    return client is not None and client.enabled


def _cursor(value: str | None) -> int:
    if value is None or value == "":
        return 0
    # ASCII digits only: str.isdigit() also takes superscripts and other scripts' digits.
    if not (value.isascii() and value.isdigit()) or int(value) > _MAX_CURSOR:
        raise InvalidRequest("the cursor must be a non-negative integer")
    return int(value)


def _entry(entry: LogEntry, horizon: float) -> dict[str, Any]:
    return {
        "id": entry.id,
        "kind": entry.kind,
        "key": entry.key,
        "at": entry.at,
        "exp": entry.expires(horizon),
    }


def _page(ts: Tokensmith, since: int) -> tuple[list[dict[str, Any]], int, bool]:
    entries, cursor, more = ts.revocations_since(since, PAGE)
    horizon = ts.sessions.revocation_horizon
    return [_entry(e, horizon) for e in entries], cursor, more


def _read(request: Request) -> tuple[int, list[dict[str, Any]], int, bool]:
    _resource_server(request)
    since = _cursor(request.query_params.get("since"))
    entries, cursor, more = _page(_ts(request), since)
    return since, entries, cursor, more


async def revocations(request: Request) -> Response:
    since, entries, cursor, more = await in_thread(_read, request)
    etag = f'"{since}-{cursor}"'
    headers = {**NO_STORE, "ETag": etag}
    if etag in (tag.strip() for tag in request.headers.get("if-none-match", "").split(",")):
        return Response(status_code=304, headers=headers)
    body = {"cursor": cursor, "more": more, "entries": entries}
    return JSONResponse(body, headers=headers)


def _event(kind: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    head = "" if event_id is None else f"id: {event_id}\n"
    return f"{head}event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def _events(ts: Tokensmith, since: int, client_id: str) -> AsyncIterator[bytes]:
    cache = ts.sessions.revocations
    poll_every = ts.settings.revocation_poll_interval
    sent = since
    read = True
    beat_at = polled_at = 0.0
    while True:
        beat = time.monotonic() >= beat_at
        # A client disabled or deleted since the stream opened hears nothing more (at
        # another instance, once its feed has applied the log entry).
        if (read or beat) and not await in_thread(_still_allowed, ts, client_id):
            return
        if read:
            entries, sent, more = await in_thread(_page, ts, sent)
            for entry in entries:
                yield _event("revocation", entry, entry["id"])
            read = more
        if beat:
            yield _event("heartbeat", {"cursor": sent})
            beat_at = time.monotonic() + HEARTBEAT
        await asyncio.sleep(TICK)
        if not cache.follows_log:
            continue
        if time.monotonic() - polled_at >= poll_every:
            # Without a feed nobody else reads the log; with one this returns at once.
            await in_thread(cache.poll)
            polled_at = time.monotonic()
        read = read or cache.cursor > sent


async def stream(request: Request) -> Response:
    client_id = await in_thread(_resource_server, request)
    since = _cursor(request.headers.get("last-event-id") or request.query_params.get("since"))
    return StreamingResponse(
        _events(_ts(request), since, client_id),
        media_type="text/event-stream",
        headers={**NO_STORE, "X-Accel-Buffering": "no"},
    )
