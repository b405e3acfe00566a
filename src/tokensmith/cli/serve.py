"""``tokensmith serve``: set up the database and keys if missing, then serve over uvicorn."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import click

from tokensmith.cli.main import cli, facade, settings_overrides
from tokensmith.settings import DPOP_ALGS, MEMORY_URL, Settings

if TYPE_CHECKING:
    from tokensmith.http.metrics import Metrics

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def issuer_is_safe(issuer: str) -> bool:
    """HTTPS, or plain HTTP on a loopback host (development)."""
    parts = urlsplit(issuer)
    return parts.scheme == "https" or (
        parts.scheme == "http" and (parts.hostname or "") in _LOOPBACK
    )


def _default_issuer(host: str, port: int) -> str:
    """Without ``--issuer``/``TOKENSMITH_ISSUER``, the address being served, so discovery
    (OpenID Connect Discovery 1.0 §3) points here; only on loopback, where it is reachable
    as written."""
    if host not in _LOOPBACK:
        raise click.UsageError(
            f"serving on {host} needs an issuer: set --issuer or TOKENSMITH_ISSUER "
            "to the public https:// URL"
        )
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


_DEFAULTS = {f.name: f.default for f in fields(Settings)}
_F = TypeVar("_F", bound=Callable[..., Any])


def _limit(flag: str, kind: click.ParamType[Any], what: str) -> Callable[[_F], _F]:
    """A serving limit: a flag over its ``TOKENSMITH_*`` setting, default in settings.py."""
    name = flag.removeprefix("--").replace("-", "_")
    setting = {"keep_alive": "keep_alive_timeout"}.get(name, name)
    return click.option(
        flag,
        setting,
        type=kind,
        default=None,
        help=f"{what} [env TOKENSMITH_{setting.upper()}; default {_DEFAULTS[setting]}]",
    )


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--insecure", is_flag=True, help="Allow a plain-HTTP issuer off loopback.")
@click.option(
    "--schedule/--no-schedule",
    default=True,
    show_default=True,
    help="Rotate keys on schedule and purge expired rows while serving.",
)
@click.option("--log-json", is_flag=True, help="Structured JSON log lines on stderr.")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="uvicorn worker processes (they share the database and key store).",
)
@_limit("--max-header-bytes", click.IntRange(1), "Largest request head (else 431).")
@_limit("--header-timeout", click.FloatRange(0, min_open=True), "Seconds to send a head.")
@_limit("--body-timeout", click.FloatRange(0, min_open=True), "Seconds to send a body.")
@_limit("--send-timeout", click.FloatRange(0, min_open=True), "Seconds a response waits unread.")
@_limit("--keep-alive", click.IntRange(1), "Seconds an idle connection stays open.")
@_limit("--max-connections", click.IntRange(1), "Open connections per process (else 503).")
@_limit("--metrics-port", click.IntRange(0, 65535), "Serve /metrics on 127.0.0.1:PORT.")
@click.option(
    "--dpop-nonces/--no-dpop-nonces",
    default=None,
    help="Require DPoP server nonces (RFC 9449 §8) [env TOKENSMITH_DPOP_NONCES; default off]",
)
@click.option(
    "--dpop-algs",
    callback=lambda _ctx, _param, value: None if value is None else tuple(value.split(",")),
    help=f"DPoP proof algorithms, comma-separated [env TOKENSMITH_DPOP_ALGS; default "
    f"{','.join(DPOP_ALGS)}]",
)
@_limit("--dpop-iat-window", click.IntRange(1, 3600), "Seconds a DPoP proof stays fresh.")
@_limit("--dpop-iat-skew", click.IntRange(0, 300), "Seconds a DPoP iat may lie ahead.")
@click.pass_context
def serve(
    ctx: click.Context,
    /,
    host: str,
    port: int,
    insecure: bool,
    schedule: bool,
    log_json: bool,
    workers: int,
    **limits: int | float | bool | tuple[str, ...] | None,
) -> None:
    """Serve the JWKS, discovery, token, revocation, introspection, health and OpenAPI
    endpoints."""
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from tokensmith import logjson
    from tokensmith.http import create_app
    from tokensmith.http.app import SCHEDULE_ENV
    from tokensmith.http.limits import ConnectionLimits, protocol_for, raise_open_file_limit
    from tokensmith.maintenance import Maintenance

    overrides = settings_overrides(ctx)
    overrides.update({name: value for name, value in limits.items() if value is not None})
    if "issuer" not in overrides:
        overrides["issuer"] = _default_issuer(host, port)
    ts = facade(ctx)
    if urlsplit(ts.settings.issuer).scheme not in ("http", "https"):
        raise click.UsageError(f"issuer {ts.settings.issuer} must be an https:// URL")
    if not issuer_is_safe(ts.settings.issuer) and not insecure:
        raise click.UsageError(
            f"issuer {ts.settings.issuer} is not HTTPS: tokens and cookies would travel in "
            "clear (pass --insecure to accept that)"
        )
    if log_json:
        logjson.configure()  # this process's lines; uvicorn applies log_config in each worker
    settings = ts.settings
    if workers > 1 and settings.database_url.startswith(MEMORY_URL):
        raise click.UsageError(
            f"{MEMORY_URL} lives in one process: each worker would have its own, empty "
            "store (use --workers 1, or a database)"
        )
    if workers > 1 and settings.metrics_port:
        raise click.UsageError(
            "--metrics-port serves one process's metrics: use it with --workers 1, or set "
            "TOKENSMITH_METRICS_TOKEN to scrape each worker on the public port"
        )
    ts.setup()
    bounds = ConnectionLimits.from_settings(settings, raise_open_file_limit())
    if bounds.max_connections < settings.max_connections:
        click.echo(f"max connections: {bounds.max_connections} (open-file limit)", err=True)
    click.echo(f"tokensmith: issuer {settings.issuer}")
    click.echo(f"discovery: http://{host}:{port}/.well-known/openid-configuration")
    served: dict[str, Any] = {
        "host": host,
        "port": port,
        # uvicorn calls http= with its own arguments; a partial of a class is as good.
        "http": protocol_for(bounds),
        "timeout_keep_alive": settings.keep_alive_timeout,
        "log_level": "info",
        "access_log": not log_json,
    }
    # JSON lines have no access log; uvicorn's own access lines lose their query values.
    served["log_config"] = (
        logjson.dict_config() if log_json else logjson.access_log_redacted(LOGGING_CONFIG)
    )
    if workers > 1:
        # Each worker builds its own app from the environment; pass our overrides on.
        for name, value in overrides.items():
            text = ",".join(value) if isinstance(value, tuple) else str(value)
            os.environ[f"TOKENSMITH_{name.upper()}"] = text
        os.environ[SCHEDULE_ENV] = "1" if schedule else "0"
        uvicorn.run("tokensmith.http.app:app_from_env", factory=True, workers=workers, **served)
        return
    app = create_app(ts, maintenance=Maintenance(ts) if schedule else None)
    with _metrics_listener(app.state.metrics, settings.metrics_port):
        uvicorn.run(app, **served)


def _metrics_listener(
    metrics: Metrics | None, port: int
) -> contextlib.AbstractContextManager[object]:
    if not port:
        return contextlib.nullcontext()
    if metrics is None:
        raise click.UsageError("--metrics-port needs prometheus-client (tokensmith[metrics])")
    from tokensmith.http.metrics_port import MetricsListener

    return MetricsListener(metrics, port)
