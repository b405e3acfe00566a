"""``/healthz`` and ``/readyz`` for load balancers and orchestrators (issue #13 item 3).

Liveness answers without touching anything: a process that can run its event loop is
alive. Readiness asks the facade (``Tokensmith.ready``) in the thread pool, since it reads
the database, and answers 503 with short reason codes, never an error's text.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tokensmith.facade import Tokensmith
from tokensmith.http.errors import NO_STORE, RETRY_AFTER
from tokensmith.http.threads import in_thread


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"}, headers=NO_STORE)


async def readyz(request: Request) -> Response:
    ts: Tokensmith = request.app.state.tokensmith
    reasons = await in_thread(ts.ready)
    if reasons:
        body = {"status": "unavailable", "reasons": reasons}
        headers = {**NO_STORE, "Retry-After": RETRY_AFTER}
        return JSONResponse(body, status_code=503, headers=headers)
    return JSONResponse({"status": "ready"}, headers=NO_STORE)
