"""Flask: bearer-token guards over ``BearerGuard`` (optional extra: ``tokensmith[flask]``).

``TokensmithGuard(app, audience=..., jwks_url=...)`` (or ``tokensmith=ts`` for a local
issuer, revocation included) registers itself in ``app.extensions``; ``@require_token(
scopes=[...])`` protects one view, ``protect_all=True`` every request through a
``before_request`` hook. Verified claims are in ``flask.g.token_claims``. Rejections are
the RFC 6750 §3 answers of ``BearerAuthMiddleware``: status, ``WWW-Authenticate``
challenge and an OAuth error JSON body. DPoP-bound tokens are checked against their proof
for ``request.base_url`` (behind a proxy: werkzeug's ``ProxyFix`` or the guard's
``public_base_url``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec

from flask import Flask, Response, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue

from tokensmith.errors import TokensmithError
from tokensmith.http.remote_jwks import RemoteJwks
from tokensmith.http.resource import STATE_KEY, BearerGuard, error_body
from tokensmith.http.resource_dpop import ResourceRequest

#: The ``app.extensions`` key of the guard.
EXTENSION = "tokensmith"

P = ParamSpec("P")


class TokensmithGuard:
    """The bearer-token policy of one Flask app.

    Pass ``guard=`` (a ``BearerGuard``), or its keyword arguments; ``jwks_url=`` is
    shorthand for ``keys=RemoteJwks(jwks_url)`` (https only). ``protect_all`` checks every
    request except the endpoints named in ``exempt`` (e.g. ``"health"``, ``"static"``).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        guard: BearerGuard | None = None,
        jwks_url: str | None = None,
        protect_all: bool = False,
        exempt: Iterable[str] = (),
        **guard_options: Any,
    ) -> None:
        if guard is not None and (guard_options or jwks_url is not None):
            raise TypeError("pass guard= or BearerGuard options, not both")
        if jwks_url is not None:
            guard_options["keys"] = RemoteJwks(jwks_url)
        self.guard = guard if guard is not None else BearerGuard(**guard_options)
        self.protect_all = protect_all
        self.exempt = frozenset([exempt] if isinstance(exempt, str) else exempt)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register on ``app`` (the Flask application-factory pattern)."""
        app.extensions[EXTENSION] = self
        if self.protect_all:
            app.before_request(self._before_request)

    def check(self, scopes: Iterable[str] | None = None) -> Response | None:
        """Verify the current request: ``None`` with ``g.token_claims`` set, or the
        rejection to return."""
        try:
            claims = self.guard.authenticate_sync(
                request.headers.getlist("Authorization"),
                scopes=scopes,
                request=ResourceRequest(
                    request.method, request.base_url, tuple(request.headers.getlist("DPoP"))
                ),
            )
        except TokensmithError as exc:
            status, headers = self.guard.challenge(exc, scopes=scopes)
            response = jsonify(error_body(exc))
            response.status_code = status
            response.headers.update(headers)
            return response
        setattr(g, STATE_KEY, claims)
        return None

    def _before_request(self) -> Response | None:
        if request.endpoint in self.exempt:
            return None
        return self.check()


def require_token(
    scopes: Iterable[str] | None = None,
) -> Callable[[Callable[P, ResponseReturnValue]], Callable[P, ResponseReturnValue]]:
    """``@require_token(scopes=["read"])``: the view runs only for a valid token holding
    ``scopes`` (default: the guard's), with its claims in ``g.token_claims``."""
    required = None if scopes is None else list(scopes)

    def decorate(view: Callable[P, ResponseReturnValue]) -> Callable[P, ResponseReturnValue]:
        @functools.wraps(view)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> ResponseReturnValue:
            extension = current_app.extensions.get(EXTENSION)
            if not isinstance(extension, TokensmithGuard):
                raise RuntimeError("require_token needs TokensmithGuard(app, ...) first")
            rejection = extension.check(required)
            return view(*args, **kwargs) if rejection is None else rejection

        return guarded

    return decorate


__all__ = ["EXTENSION", "TokensmithGuard", "require_token"]
