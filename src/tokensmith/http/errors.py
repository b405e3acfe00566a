"""Errors as RFC 6749 §5.2 JSON. Only descriptions meant for clients leave the server."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tokensmith.errors import InvalidClient, TemporarilyUnavailable, TokensmithError, UseDPoPNonce

logger = logging.getLogger("tokensmith.http")

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# Seconds a client should wait before retrying a 503 (RFC 9110 §10.2.3): about the time the
# pool takes to find a new primary once the failover manager promoted one.
RETRY_AFTER = "1"


class OAuthError(TokensmithError):
    """An RFC 6749 §5.2 error the core does not have a class for (e.g.
    ``unsupported_grant_type``, ``unauthorized_client``)."""

    def __init__(self, error: str, description: str, status_code: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.status_code = status_code


def error_response(exc: TokensmithError) -> Response:
    headers = dict(NO_STORE)
    if isinstance(exc, InvalidClient):
        # RFC 6749 §5.2: 401 with a WWW-Authenticate naming the scheme the client may use.
        headers["WWW-Authenticate"] = 'Basic realm="tokensmith"'
    if isinstance(exc, UseDPoPNonce):
        headers["DPoP-Nonce"] = exc.nonce  # RFC 9449 §8: the nonce to put in the next proof
    if isinstance(exc, TemporarilyUnavailable):
        headers["Retry-After"] = RETRY_AFTER
    body = {"error": exc.error}
    if exc.status_code < 500:
        body["error_description"] = exc.description
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


async def handle_tokensmith_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TokensmithError)
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.count_error(exc.error)
    if isinstance(exc, TemporarilyUnavailable):
        # Expected by the hundred while the database fails over: one line each, no traceback.
        logger.warning(
            "%s %s: %s (%s)", request.method, request.url.path, exc.error, exc.description
        )
    elif exc.status_code >= 500:
        logger.error(
            "%s %s failed: %s (%s: %s)",
            request.method,
            request.url.path,
            exc.error,
            type(exc).__name__,
            exc.description,
            exc_info=exc.__cause__ is not None,
        )
    return error_response(exc)


async def handle_client_disconnect(request: Request, exc: Exception) -> Response:
    """A client gone (or cut off by ``limits.py``'s body deadline) before its body was
    read: one line, no traceback; the response goes nowhere."""
    logger.info(
        "%s %s: client disconnected before sending its body", request.method, request.url.path
    )
    return Response(status_code=400, headers=NO_STORE)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("%s %s failed", request.method, request.url.path)
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.count_error("server_error")
    return JSONResponse({"error": "server_error"}, status_code=500, headers=NO_STORE)
