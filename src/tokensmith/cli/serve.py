"""``tokensmith serve``: set up the database and keys if missing, then serve over uvicorn."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import click

from tokensmith.cli.main import cli, facade

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def issuer_is_safe(issuer: str) -> bool:
    """HTTPS, or plain HTTP on a loopback host (development)."""
    parts = urlsplit(issuer)
    return parts.scheme == "https" or (
        parts.scheme == "http" and (parts.hostname or "") in _LOOPBACK
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
@click.pass_context
def serve(
    ctx: click.Context,
    host: str,
    port: int,
    insecure: bool,
    schedule: bool,
    log_json: bool,
    workers: int,
) -> None:
    """Serve the JWKS, discovery, token, revocation and introspection endpoints."""
    import uvicorn

    from tokensmith import logjson
    from tokensmith.http import create_app
    from tokensmith.http.app import SCHEDULE_ENV
    from tokensmith.http.serving import NoDelayHttpToolsProtocol
    from tokensmith.maintenance import Maintenance

    ts = facade(ctx)
    if not issuer_is_safe(ts.settings.issuer) and not insecure:
        raise click.UsageError(
            f"issuer {ts.settings.issuer} is not HTTPS: tokens and cookies would travel in "
            "clear (pass --insecure to accept that)"
        )
    if log_json:
        logjson.configure()
    ts.setup()
    click.echo(f"tokensmith: issuer {ts.settings.issuer}")
    click.echo(f"discovery: http://{host}:{port}/.well-known/openid-configuration")
    if workers > 1:
        # Each worker builds its own app from the environment; pass our overrides on.
        for name, value in ctx.find_root().params.items():
            if value is not None:
                os.environ[f"TOKENSMITH_{name.upper()}"] = str(value)
        os.environ[SCHEDULE_ENV] = "1" if schedule else "0"
        uvicorn.run(
            "tokensmith.http.app:app_from_env",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            http=NoDelayHttpToolsProtocol,
            log_level="info",
            access_log=not log_json,
        )
        return
    app = create_app(ts, maintenance=Maintenance(ts) if schedule else None)
    uvicorn.run(
        app,
        host=host,
        port=port,
        http=NoDelayHttpToolsProtocol,
        log_level="info",
        access_log=not log_json,
    )
