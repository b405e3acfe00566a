"""DPoP at a resource server (RFC 9449 §7): ``Authorization: DPoP <token>`` with a proof of
the key in its ``cnf.jkt``, for this very request (``htm``, ``htu``, ``ath``); a DPoP-bound
token presented as ``Bearer`` is refused (§7.2; SECURITY D2).

``htu`` is the request URI as the client addressed it: the scheme and ``Host`` the server
saw, or, behind a proxy that rewrites them, ``public_base_url`` (``https://api.example``,
optionally with the path prefix the proxy strips) in their place.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from starlette.types import Scope

from tokensmith.dpop.proof import Proof, ProofVerifier
from tokensmith.errors import InvalidDPoPProof, InvalidRequest, InvalidToken

# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=";
# RFC 9449 §7.1 uses the same for the DPoP scheme.
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# RFC 9110 §7.2: a Host is a name or an IPv4 or [IPv6] address, with an optional port.
_HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_WS_SCHEMES = {"ws": "http", "wss": "https"}


@dataclass(frozen=True, slots=True)
class ResourceRequest:
    """What a DPoP check needs of the HTTP request: its method, its URI as the server saw
    it, and every value of its ``DPoP`` header."""

    method: str
    url: str
    dpop: tuple[str, ...] = ()


class DPoPInvalidToken(InvalidToken):
    """``invalid_token`` answered with a DPoP challenge (RFC 9449 §7.1)."""


def asgi_request(scope: Scope) -> ResourceRequest:
    """The ``ResourceRequest`` of an ASGI HTTP or WebSocket scope."""
    headers: Sequence[tuple[bytes, bytes]] = scope.get("headers", ())
    host = ""
    proofs: list[str] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"host":
            host = value.decode("latin-1")
        elif lowered == b"dpop":
            proofs.append(value.decode("latin-1"))
    scheme = str(scope.get("scheme", "http"))
    scheme = _WS_SCHEMES.get(scheme, scheme)
    if not _HOST.fullmatch(host):
        # Absent or not a host[:port] (a "/", "#" or "@" in it would move the path the proof
        # is checked against): the address the request reached instead.
        server = scope.get("server")
        host = f"{server[0]}:{server[1]}" if server else "localhost"
    method = "GET" if scope["type"] == "websocket" else str(scope.get("method", "GET"))
    return ResourceRequest(method, f"{scheme}://{host}{_path(scope)}", tuple(proofs))


def _path(scope: Scope) -> str:
    """The path as the client sent it, still percent-encoded (ASGI ``raw_path``): the
    decoded ``path`` turns ``%3F`` and ``%23`` into a query or a fragment that the ``htu``
    comparison would then cut off."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else quote(str(scope.get("path", "/")), safe="/")
    return path.replace("?", "%3F").replace("#", "%23") or "/"


def credentials(authorization: Sequence[str]) -> tuple[str, str] | None:
    """``("bearer" | "dpop", token)`` from the ``Authorization`` values, ``None`` when
    there are none of these schemes (RFC 6750 §2.1, RFC 9449 §7.1)."""
    if not authorization:
        return None
    if len(authorization) > 1:
        raise InvalidRequest("more than one Authorization header")
    scheme, _, token = authorization[0].strip().partition(" ")
    scheme = scheme.lower()
    if scheme not in ("bearer", "dpop"):
        return None
    token = token.strip(" ")
    if not _TOKEN68.fullmatch(token):
        raise InvalidRequest(f"malformed {'Bearer' if scheme == 'bearer' else 'DPoP'} credentials")
    return scheme, token


def public_url(url: str, public_base_url: str | None) -> str:
    """``url`` with its scheme and authority replaced by ``public_base_url``'s (whose path
    is a prefix the proxy strips), or as it is without one."""
    if public_base_url is None:
        return url
    return public_base_url.rstrip("/") + (urlsplit(url).path or "/")


def check_binding(
    verifier: ProofVerifier,
    claims: dict[str, Any],
    scheme: str,
    token: str,
    request: ResourceRequest | None,
    public_base_url: str | None,
    *,
    remember: bool = True,
) -> Proof | None:
    """RFC 9449 §7.1 and §7.2 for a token whose signature and claims verified; the
    accepted proof, or ``None`` for a Bearer token. ``remember=False``: the caller records
    the proof in the store's shared ledger (``BearerGuard(share_proofs=True)``)."""
    cnf = claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    if scheme == "bearer":
        if jkt is not None:
            raise DPoPInvalidToken("a DPoP-bound token must be sent with the DPoP scheme")
        return None
    if not isinstance(jkt, str):
        raise DPoPInvalidToken("the token is not DPoP-bound: send it as Bearer")
    if request is None:
        raise InvalidDPoPProof("this endpoint cannot check DPoP proofs")
    return verifier.verify(
        request.dpop or None,
        htm=request.method,
        htu=public_url(request.url, public_base_url),
        access_token=token,
        jkt=jkt,
        remember=remember,
    )
