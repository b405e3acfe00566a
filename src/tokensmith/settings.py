"""Typed, immutable configuration. Defaults live here and nowhere else.

``Settings.from_env()`` is the only place that reads the environment (``TOKENSMITH_*``).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from types import MappingProxyType
from typing import Any

from tokensmith.errors import ConfigError

MINUTE = 60
DAY = 86_400

SUPPORTED_ALGS = ("ES256", "ES384", "EdDSA", "RS256", "PS256")
# RFC 9449 §5.1: the asymmetric algorithms a DPoP proof may use (no HMAC, no "none").
DPOP_ALGS = ("ES256", "ES384", "EdDSA", "PS256", "RS256")
MAX_DPOP_IAT_WINDOW = 3600
# RFC 9864 registers the fully specified name; we sign as EdDSA and accept either.
ALG_ALIASES = {"Ed25519": "EdDSA"}
PROFILES = ("default", "pci-dss")
KEY_STORES = ("file", "sql", "pkcs11")
PCI_DSS_IDLE_TTL = 15 * MINUTE  # PCI DSS 4.0 req. 8.2.8
MAX_LEEWAY = 300
# ``database_url`` of the in-memory reference store (tests and demos; not durable).
MEMORY_URL = "memory://"
MAX_REUSE_GRACE = 60
_TTL_FIELDS = ("access_token_ttl", "id_token_ttl", "refresh_idle_ttl", "family_ttl")
ENV_PREFIX = "TOKENSMITH_"
# Variables read outside ``Settings``: ``tokensmith serve``'s worker hand-off
# (tokensmith/http/app.py) and the test suite's PostgreSQL URL (tests/conftest.py).
_OTHER_ENV = frozenset({"TOKENSMITH_SERVE_SCHEDULE", "TOKENSMITH_TEST_PG_URL"})
logger = logging.getLogger("tokensmith.settings")
# Unknown variables already warned about: once per process, not once per ``from_env``.
_warned: set[str] = set()


@dataclass(frozen=True, kw_only=True)
class Lifetimes:
    """Resolved lifetimes (seconds) for one client."""

    access_token_ttl: int
    id_token_ttl: int
    refresh_idle_ttl: int
    family_ttl: int
    refresh_reuse_grace: float
    issue_refresh_token: bool = True


@dataclass(frozen=True, kw_only=True)
class ClientLifetimes:
    """Per-client overrides; ``None`` inherits the global setting."""

    access_token_ttl: int | None = None
    id_token_ttl: int | None = None
    refresh_idle_ttl: int | None = None
    family_ttl: int | None = None
    refresh_reuse_grace: float | None = None
    issue_refresh_token: bool = True


@dataclass(frozen=True, kw_only=True)
class Settings:
    issuer: str
    database_url: str = "sqlite:///tokensmith.db"
    keys_dir: str = "keys"
    key_passphrase: str | None = field(default=None, repr=False)
    # "file": keys_dir on this machine; "sql": database_url, shared by every instance;
    # "pkcs11": keys made and kept in an HSM token, their lifecycle records in keys_dir.
    key_store: str = "file"
    pkcs11_module: str | None = None  # path to the PKCS#11 library (.so)
    pkcs11_token_label: str | None = None
    pkcs11_pin: str | None = field(default=None, repr=False)
    pkcs11_pin_file: str | None = None  # read at start-up, so the PIN stays out of the env
    signing_alg: str = "ES256"
    access_token_ttl: int = 5 * MINUTE
    id_token_ttl: int = 5 * MINUTE
    refresh_idle_ttl: int = 14 * DAY
    family_ttl: int = 30 * DAY
    # A used refresh token presented again within this many seconds is a retry, not reuse.
    refresh_reuse_grace: float = 0.0
    refresh_grace_retries: int = 3
    profile: str = "default"
    client_lifetimes: Mapping[str, ClientLifetimes] = field(default_factory=dict)
    # Verification: bounded clock-skew allowance and the longest exp - iat we accept.
    leeway: float = 60.0
    max_token_lifetime: int = DAY
    max_token_bytes: int = 8192
    # Key lifecycle: how long verifiers may cache the JWKS, and the scheduled rotation period.
    jwks_max_age: int = 10 * MINUTE
    key_rotation_period: int = 30 * DAY
    # Revocations by other instances: the whole list is re-read every revocation_cache_ttl
    # s; the log is polled every revocation_poll_interval s (SQLite; PostgreSQL while its
    # LISTEN connection is down: it is pushed otherwise).
    revocation_cache_ttl: float = 5.0
    revocation_poll_interval: float = 0.25
    # How long a process trusts a looked-up client registration before reading it again.
    client_cache_ttl: float = 5.0
    # SQL store connections: how long a writer waits for SQLite's lock, the pool per process
    # (PostgreSQL may open twice as many more under load), and SQLite's durability level.
    database_busy_timeout: float = 10.0
    database_pool_size: int = 10
    # PostgreSQL bounds (README "High availability"): seconds to connect to each host of the
    # URL, to wait for a row lock, and for a rotation whose commit was cut off to learn
    # whether it happened (it waits for the new primary that long, then answers 503).
    database_connect_timeout: float = 3.0
    database_lock_timeout: float = 10.0
    database_in_doubt_timeout: float = 15.0
    sqlite_synchronous: str = "FULL"
    # Server secret for deriving grace-retry children; when absent the key store keeps one
    # (never the database: SECURITY B1).
    refresh_secret: str | None = field(default=None, repr=False)
    # What one client may hold of ``tokensmith serve`` (SECURITY.md 4b B2): request head
    # bytes (h11 allows 16 KiB, nginx 8 KiB), seconds to send the head and the body,
    # seconds a response may wait on a client that does not read it (nginx send_timeout:
    # 60), idle keep-alive seconds, and open connections per process.
    max_header_bytes: int = 16 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    send_timeout: float = 30.0
    keep_alive_timeout: int = 5
    max_connections: int = 1000
    # /metrics: on its own loopback port (0: none), or on the public port behind this token.
    metrics_port: int = 0
    metrics_token: str | None = field(default=None, repr=False)
    # Back-channel logout delivery (README "Back-channel logout"): seconds per connect,
    # write and read (3 times this bounds one whole POST, logout/delivery.py); how often an
    # instance looks for due logouts (and the first retry delay); the longest retry delay;
    # attempts before a logout is dropped.
    backchannel_timeout: float = 5.0
    backchannel_poll_interval: float = 1.0
    backchannel_max_backoff: float = 300.0
    backchannel_max_attempts: int = 12
    # DPoP (RFC 9449): server nonces (§8) on or off, the proof algorithms accepted, and how
    # old (seconds) and how far ahead a proof's iat may be.
    dpop_nonces: bool = False
    dpop_algs: tuple[str, ...] = DPOP_ALGS
    dpop_iat_window: int = 60
    dpop_iat_skew: int = 5
    # Who may learn about other clients' tokens (README "Configuration", "Sessions"): the
    # client ids that may introspect and read the revocation feed (empty: every
    # confidential client), and a scope an access token must hold to list or end its
    # user's sessions (None: any token whose audience is this issuer).
    resource_server_clients: tuple[str, ...] = ()
    sessions_scope: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.issuer, str) or not self.issuer:
            raise ConfigError("issuer is required")
        object.__setattr__(self, "database_url", _with_driver(self.database_url))
        alg = ALG_ALIASES.get(self.signing_alg, self.signing_alg)
        if alg not in SUPPORTED_ALGS:
            raise ConfigError(
                f"signing_alg {self.signing_alg!r} is not one of {', '.join(SUPPORTED_ALGS)}"
            )
        object.__setattr__(self, "signing_alg", alg)
        if self.key_store not in KEY_STORES:
            raise ConfigError(f"key_store must be one of {', '.join(KEY_STORES)}")
        if self.key_store == "sql" and not self.key_passphrase:
            raise ConfigError(
                "key_store 'sql' encrypts private keys at rest: set TOKENSMITH_KEY_PASSPHRASE"
            )
        if self.key_store == "pkcs11":
            _require_pkcs11(self)
        if self.profile not in PROFILES:
            raise ConfigError(f"profile must be one of {', '.join(PROFILES)}")
        if not _finite(self.leeway) or not 0 <= self.leeway <= MAX_LEEWAY:
            raise ConfigError(f"leeway must be a finite number between 0 and {MAX_LEEWAY} s")
        for name in (*_TTL_FIELDS, "max_token_lifetime", "max_token_bytes"):
            _require_int(name, getattr(self, name), minimum=1)
        _require_int("database_pool_size", self.database_pool_size, minimum=1)
        for name in ("jwks_max_age", "key_rotation_period", "refresh_grace_retries"):
            _require_int(name, getattr(self, name), minimum=0)
        for name in ("max_header_bytes", "keep_alive_timeout", "max_connections"):
            _require_int(name, getattr(self, name), minimum=1)
        _require_int("backchannel_max_attempts", self.backchannel_max_attempts, minimum=1)
        for name in (
            "header_timeout",
            "body_timeout",
            "send_timeout",
            "backchannel_timeout",
            "backchannel_poll_interval",
            "backchannel_max_backoff",
            "revocation_poll_interval",
            *_DATABASE_BOUNDS,
        ):
            value = getattr(self, name)
            if not _finite(value) or value <= 0:
                raise ConfigError(f"{name} must be a finite number of seconds > 0")
        _require_int("metrics_port", self.metrics_port, minimum=0)
        if self.metrics_port > 65535:
            raise ConfigError("metrics_port must be a TCP port (0 for none)")
        _require_grace(self.refresh_reuse_grace)
        _require_dpop(self)
        if self.sessions_scope is not None and (
            not self.sessions_scope or " " in self.sessions_scope
        ):
            raise ConfigError("sessions_scope must be one scope (no spaces), or unset")
        for name in ("revocation_cache_ttl", "client_cache_ttl", "database_busy_timeout"):
            value = getattr(self, name)
            if not _finite(value) or value < 0:
                raise ConfigError(f"{name} must be a finite non-negative number")
        overrides = dict(self.client_lifetimes)
        for client_id, override in overrides.items():
            for name in _TTL_FIELDS:
                value = getattr(override, name)
                if value is not None:
                    _require_int(f"{client_id}: {name}", value, minimum=1)
            if override.refresh_reuse_grace is not None:
                _require_grace(override.refresh_reuse_grace)
        object.__setattr__(self, "client_lifetimes", MappingProxyType(overrides))
        if self.longest_token_ttl > self.max_token_lifetime:
            raise ConfigError("a token lifetime is longer than max_token_lifetime")

    def lifetimes_for(self, client_id: str) -> Lifetimes:
        """The lifetimes one client gets: its overrides, else the global ones, then the profile."""
        found = self._resolved_lifetimes.get(client_id)
        return self._default_lifetimes if found is None else found

    # Settings are frozen, so each answer is worked out once (it is asked on every refresh).
    @cached_property
    def _resolved_lifetimes(self) -> dict[str, Lifetimes]:
        return {cid: self._resolve(o) for cid, o in self.client_lifetimes.items()}

    @cached_property
    def _default_lifetimes(self) -> Lifetimes:
        return self._resolve(ClientLifetimes())

    def _resolve(self, o: ClientLifetimes) -> Lifetimes:
        idle = _pick(o.refresh_idle_ttl, self.refresh_idle_ttl)
        if self.profile == "pci-dss":
            idle = min(idle, PCI_DSS_IDLE_TTL)
        grace = o.refresh_reuse_grace
        return Lifetimes(
            access_token_ttl=_pick(o.access_token_ttl, self.access_token_ttl),
            id_token_ttl=_pick(o.id_token_ttl, self.id_token_ttl),
            refresh_idle_ttl=idle,
            family_ttl=_pick(o.family_ttl, self.family_ttl),
            refresh_reuse_grace=self.refresh_reuse_grace if grace is None else grace,
            issue_refresh_token=o.issue_refresh_token,
        )

    @property
    def longest_token_ttl(self) -> int:
        """The longest access/ID token lifetime any client gets: retired keys outlive it."""
        every = [self.lifetimes_for(""), *map(self.lifetimes_for, self.client_lifetimes)]
        return max(max(lt.access_token_ttl, lt.id_token_ttl) for lt in every)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``TOKENSMITH_<FIELD>`` for every scalar field (``TOKENSMITH_ISSUER``,
        ``..._DATABASE_URL``, ``..._KEYS_DIR``, ``..._KEY_PASSPHRASE``, ``..._KEY_STORE``,
        ``..._SIGNING_ALG``, ``..._ACCESS_TOKEN_TTL``, ``..._REFRESH_REUSE_GRACE``, ...).
        Keyword overrides win. Without ``TOKENSMITH_ISSUER`` the issuer is the local
        development server."""
        env = os.environ if environ is None else environ
        _warn_unknown(env, {ENV_PREFIX + f.name.upper() for f in fields(cls)})
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"{ENV_PREFIX}{f.name.upper()}")
            if raw is not None and f.name != "client_lifetimes":
                values[f.name] = _parse(f.name, raw, f.default)
        values.update(overrides)
        values.setdefault("issuer", "http://127.0.0.1:8000")
        return cls(**values)


# Heroku-style and driverless PostgreSQL URLs mean psycopg 3, the driver of tokensmith[postgres]
# (SQLAlchemy knows no ``postgres://`` and would pick psycopg2 for ``postgresql://``).
_PG_SCHEMES = ("postgres://", "postgresql://")


def _with_driver(database_url: str) -> str:
    for scheme in _PG_SCHEMES:
        if database_url.startswith(scheme):
            return "postgresql+psycopg://" + database_url.removeprefix(scheme)
    return database_url


_DATABASE_BOUNDS = (
    "database_connect_timeout",
    "database_lock_timeout",
    "database_in_doubt_timeout",
)


def _pick(override: int | None, default: int) -> int:
    return default if override is None else override


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _require_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be a whole number ≥ {minimum}")


def _require_pkcs11(settings: Settings) -> None:
    if not settings.pkcs11_module or not settings.pkcs11_token_label:
        raise ConfigError(
            "key_store 'pkcs11' needs TOKENSMITH_PKCS11_MODULE and TOKENSMITH_PKCS11_TOKEN_LABEL"
        )
    if (settings.pkcs11_pin is None) == (settings.pkcs11_pin_file is None):
        raise ConfigError(
            "key_store 'pkcs11' needs exactly one of TOKENSMITH_PKCS11_PIN and "
            "TOKENSMITH_PKCS11_PIN_FILE"
        )


def _require_dpop(settings: Settings) -> None:
    algs = tuple(ALG_ALIASES.get(a, a) for a in settings.dpop_algs)
    if not algs or not set(algs) <= set(DPOP_ALGS):
        raise ConfigError(f"dpop_algs must be some of {', '.join(DPOP_ALGS)}")
    object.__setattr__(settings, "dpop_algs", algs)
    _require_int("dpop_iat_window", settings.dpop_iat_window, minimum=1)
    if settings.dpop_iat_window > MAX_DPOP_IAT_WINDOW:
        raise ConfigError(f"dpop_iat_window must be at most {MAX_DPOP_IAT_WINDOW} s")
    _require_int("dpop_iat_skew", settings.dpop_iat_skew, minimum=0)
    if settings.dpop_iat_skew > MAX_LEEWAY:
        raise ConfigError(f"dpop_iat_skew must be at most {MAX_LEEWAY} s")


def _require_grace(value: object) -> None:
    if not _finite(value) or not 0 <= value <= MAX_REUSE_GRACE:  # type: ignore[operator]
        raise ConfigError(f"refresh_reuse_grace must be between 0 and {MAX_REUSE_GRACE} s")


def _warn_unknown(env: Mapping[str, str], known: set[str]) -> None:
    """An unknown ``TOKENSMITH_*`` variable is a typo more often than not (issue #13)."""
    for name in sorted(env):
        if name.startswith(ENV_PREFIX) and name not in known | _OTHER_ENV | _warned:
            _warned.add(name)
            logger.warning("warning: %s is not a tokensmith setting; ignored", name)


def _expected(name: str, default: object) -> str:
    """The form a variable's value must have, as its error message says it."""
    if isinstance(default, bool):
        return "one of 1, 0, true, false, yes, no"
    if name in (*_TTL_FIELDS, "max_token_lifetime"):
        return "whole seconds ≥ 1"
    if isinstance(default, int):
        return "a whole number"
    return "a number"


def _parse(name: str, raw: str, default: object) -> Any:
    """``raw`` as the type of ``default``; else a ``ConfigError`` naming the variable, the
    value and the expected form (secrets' values are never echoed)."""
    try:
        if isinstance(default, bool):
            lowered = raw.strip().lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return lowered in ("1", "true", "yes")
        if isinstance(default, int):
            value = int(raw)
            if name in (*_TTL_FIELDS, "max_token_lifetime") and value < 1:
                raise ValueError(raw)
            return value
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, tuple):
            return tuple(raw.replace(",", " ").split())
    except ValueError:
        raise ConfigError(
            f"{ENV_PREFIX}{name.upper()}={raw!r}: expected {_expected(name, default)}"
        ) from None
    return raw
