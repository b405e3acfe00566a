"""Client authentication at the token, revocation and introspection endpoints.

``client_secret_basic`` (RFC 6749 §2.3.1: id and secret are form-urlencoded before the
Basic encoding), ``client_secret_post``, or ``none`` for public clients (id only). Using
two methods at once is refused (§2.3). Every failure, a disabled client included, is
``invalid_client`` (401).
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote_plus

from starlette.requests import Request

from tokensmith.clients import Client, ClientRegistry, secret_matches
from tokensmith.errors import InvalidClient, InvalidRequest
from tokensmith.http.errors import OAuthError
from tokensmith.settings import Settings

# RFC 8414 §2 names of the methods ``authenticate`` accepts; introspection needs a secret.
SECRET_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
AUTH_METHODS = (*SECRET_AUTH_METHODS, "none")


def _basic(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise InvalidClient("unsupported authentication scheme")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClient("malformed Basic credentials") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise InvalidClient("malformed Basic credentials")
    return unquote_plus(client_id), unquote_plus(secret)


def authenticate(
    request: Request, form: dict[str, str], registry: ClientRegistry, now: float
) -> Client:
    """The registered, enabled client the request authenticates as; a rotated secret is
    accepted until its overlap ends at ``now``."""
    basic = _basic(request)
    if basic is not None:
        if "client_secret" in form or form.get("client_id", basic[0]) != basic[0]:
            raise InvalidRequest("use one client authentication method")
        client_id, secret = basic
    else:
        client_id = form.get("client_id", "")
        secret = form.get("client_secret", "")
    if not client_id:
        raise InvalidClient("client authentication required")
    client = registry.get_client(client_id)
    if secret or (client is not None and client.confidential):
        if not secret_matches(client, secret, now):
            raise InvalidClient("client authentication failed")
    elif client is None:
        raise InvalidClient("client authentication failed")
    assert client is not None
    if not client.enabled:
        raise InvalidClient("client is disabled")
    return client


def require_resource_server(client: Client, settings: Settings, what: str) -> None:
    """Introspection and the revocation feed tell about every client's tokens: confidential
    clients only, and of those only ``settings.resource_server_clients`` when it names any
    (403 ``unauthorized_client``: authenticated, not allowed)."""
    if not client.confidential:
        raise OAuthError("invalid_client", f"{what} needs a confidential client", 401)
    allowed = settings.resource_server_clients
    if allowed and client.client_id not in allowed:
        raise OAuthError("unauthorized_client", f"{what} is for the resource servers", 403)
