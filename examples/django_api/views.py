"""``GET /api/health`` (public) and ``GET /api/me`` (a token with the ``read`` scope)."""

from __future__ import annotations

from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.request import Request
from rest_framework.response import Response

from tokensmith.integrations.django.permissions import HasScope


@api_view(["GET"])
@authentication_classes([])
@permission_classes([])
def health(request: Request) -> Response:
    return Response({"ok": True})


@api_view(["GET"])
@permission_classes([HasScope("read")])
def me(request: Request) -> Response:
    return Response(request.user.claims)
