"""The ASGI surface (Starlette). Only this package turns errors into HTTP responses."""

from __future__ import annotations

from tokensmith.http.app import create_app

__all__ = ["create_app"]
