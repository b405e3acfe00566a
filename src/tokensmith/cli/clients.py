"""``tokensmith clients add|list``."""

from __future__ import annotations

import click

from tokensmith.cli.main import cli, echo_json, facade
from tokensmith.clients import Client


@cli.group()
def clients() -> None:
    """OAuth clients allowed to use the token, revocation and introspection endpoints."""


def _describe(client: Client) -> dict[str, object]:
    return {
        "client_id": client.client_id,
        "type": "confidential" if client.confidential else "public",
        "grant_types": list(client.grant_types),
        "scopes": list(client.scopes),
        "audiences": list(client.audiences),
        "redirect_uris": list(client.redirect_uris),
        "allowed_origins": list(client.allowed_origins),
        "cookie_mode": client.cookie_mode,
    }


@clients.command()
@click.argument("name")
@click.option("--public", "kind", flag_value="public", help="A browser or native app.")
@click.option("--confidential", "kind", flag_value="confidential", help="A server with a secret.")
@click.option("--redirect", "redirect_uris", multiple=True, help="Redirect URI; repeatable.")
@click.option("--origin", "allowed_origins", multiple=True, help="Allowed browser origin.")
@click.option("--cookie-mode", is_flag=True, help="SPA: refresh token in a __Host- cookie.")
@click.option("--scope", "scopes", multiple=True, help="Allowed scope; repeatable (default any).")
@click.option("--aud", "audiences", multiple=True, help="Allowed audience for client tokens.")
@click.option("--grant", "grant_types", multiple=True, help="refresh_token, client_credentials.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def add(
    ctx: click.Context,
    name: str,
    kind: str | None,
    redirect_uris: tuple[str, ...],
    allowed_origins: tuple[str, ...],
    cookie_mode: bool,
    scopes: tuple[str, ...],
    audiences: tuple[str, ...],
    grant_types: tuple[str, ...],
    as_json: bool,
) -> None:
    """Register client NAME. A confidential client's secret is printed once: store it now,
    tokensmith keeps only its hash."""
    if kind is None:
        raise click.UsageError("say --public or --confidential")
    client, secret = facade(ctx).register_client(
        name,
        confidential=kind == "confidential",
        redirect_uris=redirect_uris,
        allowed_origins=allowed_origins,
        cookie_mode=cookie_mode,
        scopes=scopes,
        audiences=audiences,
        grant_types=grant_types or None,
    )
    if as_json:
        echo_json({**_describe(client), "client_secret": secret})
        return
    click.echo(f"client_id: {client.client_id} ({_describe(client)['type']})")
    if secret is not None:
        click.echo(f"client_secret: {secret}")
        click.echo("store the secret now: it is not shown again")


@clients.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def list_clients(ctx: click.Context, as_json: bool) -> None:
    """Every registered client (never a secret)."""
    described = [_describe(c) for c in facade(ctx).clients.list_clients()]
    if as_json:
        echo_json(described)
        return
    click.echo(f"{'CLIENT_ID':<32} {'TYPE':<13} {'GRANTS':<34} COOKIE")
    for d in described:
        grants = ",".join(d["grant_types"])  # type: ignore[arg-type]
        click.echo(f"{d['client_id']:<32} {d['type']:<13} {grants:<34} {d['cookie_mode']}")
