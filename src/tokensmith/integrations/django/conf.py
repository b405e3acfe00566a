"""``settings.TOKENSMITH``: the resource-server policy, read once into a ``BearerGuard``.

Keys (README.md "Flask and Django"):

- ``AUDIENCE`` (required): the ``aud`` tokens must name;
- ``JWKS_URL`` and ``ISSUER``: verify against the issuer's JWKS (``RemoteJwks``, https);
  with ``REVOCATIONS`` (``RemoteRevocations`` options: ``client_id``, ``client_secret``,
  ...) also against its revocation feed; without ``JWKS_URL`` the guard uses a local
  ``Tokensmith`` built from ``SETTINGS``
  (``tokensmith.Settings`` fields over the ``TOKENSMITH_*`` environment) and checks
  revocation unless ``CHECK_REVOKED`` is false;
- ``SCOPES`` (every view's default), ``REALM``, ``LEEWAY``.
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

from tokensmith.errors import ConfigError
from tokensmith.facade import Tokensmith
from tokensmith.http.remote_jwks import RemoteJwks
from tokensmith.http.remote_revocations import RemoteRevocations
from tokensmith.http.resource import BearerGuard
from tokensmith.settings import Settings

_KEYS = frozenset(
    {"AUDIENCE", "ISSUER", "JWKS_URL", "SCOPES", "REALM", "LEEWAY", "CHECK_REVOKED", "SETTINGS"}
)
_lock = threading.Lock()
_guard: BearerGuard | None = None


def options() -> dict[str, Any]:
    """``settings.TOKENSMITH``, checked for unknown keys (a typo must not weaken policy)."""
    value = getattr(django_settings, "TOKENSMITH", None)
    if not isinstance(value, dict):
        raise ImproperlyConfigured("settings.TOKENSMITH must be a dict")
    unknown = sorted(set(value) - _KEYS)
    if unknown:
        raise ImproperlyConfigured(f"unknown settings.TOKENSMITH keys: {', '.join(unknown)}")
    return value


def tokensmith_settings() -> Settings:
    """The local issuer's settings: ``TOKENSMITH["SETTINGS"]`` over the environment."""
    return Settings.from_env(None, **options().get("SETTINGS", {}))


def guard() -> BearerGuard:
    """The process's ``BearerGuard``, built on first use (it caches keys)."""
    global _guard
    with _lock:
        if _guard is None:
            _guard = _build(options())
        return _guard


def reset() -> None:
    """Forget the guard, so the next request reads ``settings.TOKENSMITH`` again."""
    global _guard
    with _lock:
        _guard = None


def _revocations(conf: dict[str, Any], keys: RemoteJwks) -> RemoteRevocations:
    """``REVOCATIONS``: ``RemoteRevocations`` options (``client_id``, ``client_secret``,
    ``max_staleness``, ...) for the feed of ``ISSUER``; started here."""
    feed = RemoteRevocations(str(conf.get("ISSUER")), jwks=keys, **conf["REVOCATIONS"])
    feed.start()
    return feed


def _build(conf: dict[str, Any]) -> BearerGuard:
    policy: dict[str, Any] = {
        "audience": conf.get("AUDIENCE"),
        "scopes": conf.get("SCOPES", ()),
        "realm": conf.get("REALM", "api"),
    }
    if "LEEWAY" in conf:
        policy["leeway"] = conf["LEEWAY"]
    try:
        if "JWKS_URL" in conf:
            keys = RemoteJwks(conf["JWKS_URL"])
            if "REVOCATIONS" in conf:
                policy["revocations"] = _revocations(conf, keys)
            return BearerGuard(keys=keys, issuer=conf.get("ISSUER"), **policy)
        local = Tokensmith(tokensmith_settings())
        revoked = bool(conf.get("CHECK_REVOKED", True))
        return BearerGuard(tokensmith=local, check_revoked=revoked, **policy)
    except ConfigError as exc:
        raise ImproperlyConfigured(f"settings.TOKENSMITH: {exc.description}") from None
