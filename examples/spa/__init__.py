"""The browser example: tokensmith's service plus a demo login and the SPA's static files."""

from examples.spa.auth_server import CLIENT_ID, create_auth_app, register_spa_client

__all__ = ["CLIENT_ID", "create_auth_app", "register_spa_client"]
