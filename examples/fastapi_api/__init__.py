"""An API protected by tokensmith's FastAPI dependency (``require_token``)."""

from examples.fastapi_api.app import AUDIENCE, create_api, remote_keys

__all__ = ["AUDIENCE", "create_api", "remote_keys"]
