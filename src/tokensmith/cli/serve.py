"""``tokensmith serve``: set up the database and keys if missing, then serve over uvicorn."""

from __future__ import annotations

import click

from tokensmith.cli.main import cli, facade


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.pass_context
def serve(ctx: click.Context, host: str, port: int) -> None:
    """Serve the JWKS, discovery and token endpoints."""
    import uvicorn

    from tokensmith.http import create_app

    ts = facade(ctx)
    ts.setup()
    click.echo(f"tokensmith: issuer {ts.settings.issuer}")
    click.echo(f"discovery: http://{host}:{port}/.well-known/openid-configuration")
    uvicorn.run(create_app(ts), host=host, port=port, log_level="info")
