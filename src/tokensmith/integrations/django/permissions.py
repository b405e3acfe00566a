"""DRF permission by token scope: ``permission_classes = [HasScope("read")]``."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.permissions import BasePermission

from tokensmith.http.resource import InsufficientScope, MissingToken, error_body
from tokensmith.integrations.django import conf
from tokensmith.integrations.django.authentication import TokenPrincipal


class _ScopeDenied(exceptions.PermissionDenied):
    """403 ``insufficient_scope`` with its RFC 6750 §3 challenge (DRF's exception handler
    sends ``auth_header`` as ``WWW-Authenticate``)."""

    def __init__(self, scopes: tuple[str, ...]) -> None:
        exc = InsufficientScope("the token lacks a required scope")
        super().__init__(detail=error_body(exc))
        _status, headers = conf.guard().challenge(exc, scopes=scopes)
        self.auth_header = headers["WWW-Authenticate"]


class HasScope(BasePermission):
    """Allows a request whose bearer token holds every one of ``scopes``. An instance is
    its own factory, so it can stand in ``permission_classes``; a request without a
    token gets 401 with the bare Bearer challenge (RFC 6750 §3.1)."""

    def __init__(self, *scopes: str) -> None:
        self.scopes = scopes

    def __call__(self) -> HasScope:
        return self

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if not isinstance(user, TokenPrincipal):
            # DRF answers 401 with the bare challenge; the body matches the other guards'.
            missing = MissingToken("bearer token required")
            raise exceptions.NotAuthenticated(detail=error_body(missing))
        if not set(self.scopes) <= user.scopes:
            raise _ScopeDenied(self.scopes)
        return True
