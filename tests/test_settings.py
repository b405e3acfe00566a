"""Settings: defaults in one place, validation at construction, TOKENSMITH_* parsing."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
from sqlalchemy.pool import QueuePool

from tokensmith import ClientLifetimes, ConfigError, Settings
from tokensmith.http.resource import BearerGuard
from tokensmith.store.sql import open_store
from tokensmith.tokens.verify import AccessTokenVerifier

ISSUER = "https://as.example.com"


def test_defaults_follow_the_spec() -> None:
    s = Settings(issuer=ISSUER)
    assert s.signing_alg == "ES256"
    assert s.access_token_ttl == 300
    assert s.refresh_idle_ttl == 14 * 86_400
    assert s.family_ttl == 30 * 86_400
    assert s.refresh_reuse_grace == 0
    assert s.database_url == "sqlite:///tokensmith.db" and s.keys_dir == "keys"


def test_from_env_reads_tokensmith_variables() -> None:
    s = Settings.from_env(
        {
            "TOKENSMITH_ISSUER": ISSUER,
            "TOKENSMITH_DATABASE_URL": "sqlite:////tmp/x.db",
            "TOKENSMITH_KEYS_DIR": "/tmp/k",
            "TOKENSMITH_KEY_PASSPHRASE": "pw",
            "TOKENSMITH_SIGNING_ALG": "Ed25519",
            "TOKENSMITH_ACCESS_TOKEN_TTL": "120",
            "TOKENSMITH_REFRESH_REUSE_GRACE": "2.5",
            "TOKENSMITH_LEEWAY": "30",
        }
    )
    assert (s.issuer, s.database_url, s.keys_dir) == (ISSUER, "sqlite:////tmp/x.db", "/tmp/k")
    assert s.key_passphrase == "pw"
    assert s.signing_alg == "EdDSA"  # RFC 9864 name accepted, JWS name used
    assert (s.access_token_ttl, s.refresh_reuse_grace, s.leeway) == (120, 2.5, 30.0)


def test_the_passphrase_never_appears_in_repr() -> None:
    s = Settings(
        issuer=ISSUER, key_passphrase="hunter2", refresh_secret="s3cret", metrics_token="m3t"
    )
    assert "hunter2" not in repr(s) and "s3cret" not in repr(s) and "m3t" not in repr(s)


def test_serving_limits_have_safe_defaults_and_come_from_the_environment() -> None:
    """SECURITY.md 4b B2: every limit on what a client holds is on by default."""
    s = Settings(issuer=ISSUER)
    assert (s.max_header_bytes, s.header_timeout, s.body_timeout) == (16 * 1024, 10.0, 30.0)
    assert (s.send_timeout, s.keep_alive_timeout, s.max_connections) == (30.0, 5, 1000)
    assert (s.metrics_port, s.metrics_token) == (0, None)
    s = Settings.from_env({"TOKENSMITH_HEADER_TIMEOUT": "2.5", "TOKENSMITH_METRICS_PORT": "9100"})
    assert (s.header_timeout, s.metrics_port) == (2.5, 9100)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TOKENSMITH_ACCESS_TOKEN_TTL": "soon"}, "ACCESS_TOKEN_TTL"),
        ({"TOKENSMITH_SIGNING_ALG": "HS256"}, "signing_alg"),
        ({"TOKENSMITH_SIGNING_ALG": "none"}, "signing_alg"),
        ({"TOKENSMITH_LEEWAY": "inf"}, "leeway"),
        ({"TOKENSMITH_LEEWAY": "301"}, "leeway"),
        ({"TOKENSMITH_REFRESH_REUSE_GRACE": "61"}, "refresh_reuse_grace"),
        ({"TOKENSMITH_PROFILE": "lax"}, "profile"),
        ({"TOKENSMITH_ACCESS_TOKEN_TTL": "0"}, "ACCESS_TOKEN_TTL=.0.: expected whole seconds"),
        ({"TOKENSMITH_MAX_HEADER_BYTES": "0"}, "max_header_bytes"),
        ({"TOKENSMITH_HEADER_TIMEOUT": "nan"}, "header_timeout"),
        ({"TOKENSMITH_BODY_TIMEOUT": "0"}, "body_timeout"),
        ({"TOKENSMITH_SEND_TIMEOUT": "inf"}, "send_timeout"),
        ({"TOKENSMITH_MAX_CONNECTIONS": "-1"}, "max_connections"),
        ({"TOKENSMITH_METRICS_PORT": "70000"}, "metrics_port"),
    ],
    ids=lambda v: str(v),
)
def test_bad_environment_is_a_config_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({"TOKENSMITH_ISSUER": ISSUER, **env})


@pytest.mark.parametrize("leeway", [math.inf, -math.inf, math.nan, -1, 301, True])
def test_leeway_must_be_finite_and_bounded(leeway: float) -> None:
    with pytest.raises(ConfigError):
        Settings(issuer=ISSUER, leeway=leeway)


def test_pci_dss_profile_caps_idle_lifetime_at_15_minutes() -> None:
    s = Settings(issuer=ISSUER, profile="pci-dss")
    assert s.lifetimes_for("any").refresh_idle_ttl == 900
    assert Settings(issuer=ISSUER).lifetimes_for("any").refresh_idle_ttl == 14 * 86_400


def test_client_lifetimes_override_only_what_they_name() -> None:
    s = Settings(
        issuer=ISSUER,
        access_token_ttl=600,
        client_lifetimes={"spa": ClientLifetimes(access_token_ttl=60, refresh_reuse_grace=5)},
    )
    spa, other = s.lifetimes_for("spa"), s.lifetimes_for("cli")
    assert (spa.access_token_ttl, spa.refresh_reuse_grace, spa.family_ttl) == (60, 5, 30 * 86_400)
    assert (other.access_token_ttl, other.refresh_reuse_grace) == (600, 0)


def test_a_client_grace_window_is_bounded_too() -> None:
    with pytest.raises(ConfigError):
        Settings(issuer=ISSUER, client_lifetimes={"x": ClientLifetimes(refresh_reuse_grace=90)})


def test_token_lifetime_cannot_exceed_what_verifiers_accept() -> None:
    with pytest.raises(ConfigError, match="max_token_lifetime"):
        Settings(issuer=ISSUER, access_token_ttl=7200, max_token_lifetime=3600)


def test_settings_are_frozen() -> None:
    s = Settings(issuer=ISSUER)
    with pytest.raises(AttributeError):
        s.issuer = "https://evil"  # type: ignore[misc]


def test_the_sql_store_takes_its_connection_settings_from_settings(tmp_path: Path) -> None:
    """Issue #12 item 6: the store's busy timeout, pool size and durability come from
    ``Settings`` (``TOKENSMITH_DATABASE_*``), not from defaults of its own."""
    env = {
        "TOKENSMITH_DATABASE_URL": f"sqlite:///{tmp_path / 'ts.db'}",
        "TOKENSMITH_DATABASE_BUSY_TIMEOUT": "0.25",
        "TOKENSMITH_DATABASE_POOL_SIZE": "3",
        "TOKENSMITH_SQLITE_SYNCHRONOUS": "NORMAL",
    }
    store = open_store(Settings.from_env(env))
    try:
        assert isinstance(store.engine.pool, QueuePool) and store.engine.pool.size() == 3
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 250
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    finally:
        store.engine.dispose()


@pytest.mark.parametrize(
    ("name", "value"), [("database_pool_size", 0), ("database_busy_timeout", math.inf)]
)
def test_sql_connection_settings_are_validated(name: str, value: object) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings(issuer=ISSUER, **{name: value})


@pytest.mark.parametrize("target", [AccessTokenVerifier, BearerGuard])
def test_verifiers_default_to_the_settings_defaults(target: object) -> None:
    params = inspect.signature(target).parameters  # type: ignore[arg-type]
    assert params["leeway"].default == Settings.leeway
    assert params["max_lifetime"].default == Settings.max_token_lifetime
    assert params["max_bytes"].default == Settings.max_token_bytes
