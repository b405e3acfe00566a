"""The ``htu`` comparison of RFC 9449 §4.3 (check 9): the request URI without query and
fragment, after syntax- and scheme-based normalisation (RFC 3986 §6.2.2 and §6.2.3)."""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
_PERCENT = re.compile(r"%[0-9a-fA-F]{2}")


@lru_cache(maxsize=1024)
def normalize_htu(uri: str) -> str | None:
    """``scheme://host[:port]/path`` with scheme and host in lower case, the scheme's
    default port left out, an empty path as ``/``, percent-escapes in upper case; query and
    fragment dropped. ``None`` for anything that is not an absolute http(s) URI."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host or parts.username or parts.password:
        return None
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = _PERCENT.sub(lambda m: m.group(0).upper(), parts.path) or "/"
    return f"{scheme}://{netloc}{path}"


def same_htu(claimed: str, expected: str) -> bool:
    """Whether a proof's ``htu`` names the request URI ``expected``; equal strings need no
    parsing, which is the usual case."""
    if claimed == expected:
        return True
    normal = normalize_htu(expected)
    return normal is not None and normalize_htu(claimed) == normal
