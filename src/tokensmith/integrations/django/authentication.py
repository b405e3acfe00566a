"""DRF authentication by ``Authorization: Bearer`` (RFC 6750) or ``DPoP`` with its proof
(RFC 9449 §7) through ``conf.guard()``.

A request without a bearer token is left anonymous (another authenticator may accept it;
a permission then answers 401 with the bare challenge); a malformed or invalid one fails
with 400/401 and the RFC 6750 §3 challenge in ``WWW-Authenticate``.
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication

from tokensmith.errors import TokensmithError
from tokensmith.http.resource import MissingToken, error_body
from tokensmith.http.resource_dpop import ResourceRequest
from tokensmith.integrations.django import conf
from tokensmith.tokens.verify import Claims

# Where a failed authentication leaves its error for ``authenticate_header``.
_ERROR_ATTR = "_tokensmith_error"


class TokenPrincipal:
    """The authenticated party of a request (``request.user``): the token's ``sub`` and
    its verified ``claims``; never a database user."""

    is_authenticated = True
    is_anonymous = False
    is_active = True

    def __init__(self, claims: Claims) -> None:
        self.claims = claims
        subject = claims.get("sub")
        self.pk = self.id = self.username = subject if isinstance(subject, str) else ""

    @property
    def scopes(self) -> frozenset[str]:
        granted = self.claims.get("scope")
        return frozenset(granted.split()) if isinstance(granted, str) else frozenset()

    def __str__(self) -> str:
        return self.username


class _Rejected(exceptions.APIException):
    """An RFC 6750 rejection with its own status and an OAuth error body."""

    def __init__(self, exc: TokensmithError) -> None:
        super().__init__(detail=error_body(exc))
        self.status_code, headers = conf.guard().challenge(exc)
        self.auth_header = headers.get("WWW-Authenticate")


class BearerTokenAuthentication(BaseAuthentication):
    """``REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"]`` or a view's
    ``authentication_classes``. Sets ``request.auth`` to the claims."""

    def authenticate(self, request: Any) -> tuple[TokenPrincipal, Claims] | None:
        values = request._request.headers.get("Authorization")
        proof = request._request.headers.get("DPoP")
        # The URI without its query (RFC 9449 §4.3); build_absolute_uri honours the proxy
        # settings (USE_X_FORWARDED_HOST, SECURE_PROXY_SSL_HEADER).
        url = request._request.build_absolute_uri(request._request.path)
        resource = ResourceRequest(request.method, url, (proof,) if proof else ())
        try:
            claims = conf.guard().authenticate_sync(
                [values] if values else [], scopes=(), request=resource
            )
        except MissingToken:
            return None
        except TokensmithError as exc:
            setattr(request, _ERROR_ATTR, exc)
            if exc.status_code == 401:
                # DRF answers 401 with ``authenticate_header`` as the challenge.
                raise exceptions.AuthenticationFailed(error_body(exc)) from None
            raise _Rejected(exc) from None
        return TokenPrincipal(claims), claims

    def authenticate_header(self, request: Any) -> str:
        exc = getattr(request, _ERROR_ATTR, None)
        challenge_for = exc if isinstance(exc, TokensmithError) else MissingToken()
        _status, headers = conf.guard().challenge(challenge_for)
        return headers["WWW-Authenticate"]
