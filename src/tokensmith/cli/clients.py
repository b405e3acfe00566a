"""``tokensmith clients add|list|update|disable|enable|delete|rotate-secret``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from tokensmith.cli.main import cli, echo_json, facade
from tokensmith.clients import Client
from tokensmith.grants import GRANTS


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
        "dpop_bound_access_tokens": client.dpop_bound_access_tokens,
        "state": "enabled" if client.enabled else "disabled",
        "backchannel_logout_uri": client.backchannel_logout_uri,
        "backchannel_logout_session_required": client.backchannel_logout_session_required,
    }


def _named(f: Callable[..., None]) -> Callable[..., None]:
    """NAME, ``--json`` and the context: what every command on one client takes."""
    f = click.pass_context(f)
    f = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(f)
    return click.argument("name")(f)


def _lists(f: Callable[..., None]) -> Callable[..., None]:
    """The repeatable list options shared by ``add`` and ``update`` (deny-by-default: an
    empty list allows nothing)."""
    options = (
        click.option("--scope", "scopes", multiple=True, help="Allowed scope; repeatable."),
        click.option("--aud", "audiences", multiple=True, help="Allowed audience; repeatable."),
        click.option("--origin", "allowed_origins", multiple=True, help="Allowed browser origin."),
        click.option(
            "--grant", "grant_types", multiple=True, help=f"One of {', '.join(GRANTS)}; repeatable."
        ),
        click.option(
            "--backchannel-logout-uri",
            help="Where logout tokens are POSTed (https; http on loopback); '' removes it.",
        ),
        click.option(
            "--backchannel-logout-session-required/--no-backchannel-logout-session-required",
            default=None,
            help="The client needs the sid claim (logout tokens always carry it).",
        ),
    )
    for option in reversed(options):
        f = option(f)
    return f


@clients.command()
@click.argument("name")
@click.option("--public", "kind", flag_value="public", help="A browser or native app.")
@click.option("--confidential", "kind", flag_value="confidential", help="A server with a secret.")
@click.option("--redirect", "redirect_uris", multiple=True, help="Redirect URI; repeatable.")
@click.option("--cookie-mode", is_flag=True, help="SPA: refresh token in a __Host- cookie.")
@click.option(
    "--dpop-bound-access-tokens",
    is_flag=True,
    help="Every token request must carry a DPoP proof (RFC 9449 §5.2).",
)
@_lists
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def add(
    ctx: click.Context,
    name: str,
    kind: str | None,
    redirect_uris: tuple[str, ...],
    cookie_mode: bool,
    dpop_bound_access_tokens: bool,
    scopes: tuple[str, ...],
    audiences: tuple[str, ...],
    allowed_origins: tuple[str, ...],
    grant_types: tuple[str, ...],
    backchannel_logout_uri: str | None,
    backchannel_logout_session_required: bool | None,
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
        dpop_bound_access_tokens=dpop_bound_access_tokens,
        scopes=scopes,
        audiences=audiences,
        grant_types=grant_types or None,
        backchannel_logout_uri=backchannel_logout_uri or None,
        backchannel_logout_session_required=bool(backchannel_logout_session_required),
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
    click.echo(
        f"{'CLIENT_ID':<32} {'TYPE':<13} {'STATE':<9} {'GRANTS':<34} COOKIE DPOP  BACKCHANNEL"
    )
    for d in described:
        grants = ",".join(d["grant_types"])  # type: ignore[arg-type]
        click.echo(
            f"{d['client_id']:<32} {d['type']:<13} {d['state']:<9} {grants:<34} "
            f"{d['cookie_mode']!s:<6} {d['dpop_bound_access_tokens']!s:<5} "
            f"{d['backchannel_logout_uri'] or '-'}"
        )


@clients.command()
@_lists
@click.option(
    "--dpop-bound-access-tokens/--no-dpop-bound-access-tokens",
    default=None,
    help="Require a DPoP proof with every token request (RFC 9449 §5.2), or no longer.",
)
@_named
def update(ctx: click.Context, name: str, as_json: bool, **lists: Any) -> None:
    """Replace client NAME's scopes, audiences, origins or grants, or its back-channel
    logout settings. Repeated flags build one list, which replaces the stored one; a list
    not named is kept."""
    changes: dict[str, Any] = {
        field: values for field, values in lists.items() if values or values in ("", False)
    }
    _done(facade(ctx).update_client(name, **changes), as_json, "updated")


def _done(client: Client, as_json: bool, what: str) -> None:
    if as_json:
        echo_json(_describe(client))
    else:
        click.echo(f"client {client.client_id} {what}")


def _switch(enabled: bool, summary: str) -> None:
    """``clients enable`` or ``clients disable``: the same command but for the flag."""
    state = "enabled" if enabled else "disabled"

    @_named
    def command(ctx: click.Context, name: str, as_json: bool) -> None:
        _done(facade(ctx).update_client(name, enabled=enabled), as_json, state)

    clients.command(state.removesuffix("d"), help=summary)(command)


_switch(False, "Refuse client NAME everywhere (invalid_client) without revoking anything.")
_switch(True, "Accept client NAME again; its unexpired sessions work again.")


@clients.command()
@_named
def delete(ctx: click.Context, name: str, as_json: bool) -> None:
    """Remove client NAME and revoke every session it holds."""
    revoked = facade(ctx).delete_client(name)
    if as_json:
        echo_json({"client_id": name, "families_revoked": revoked})
    else:
        click.echo(f"client {name} deleted; {revoked} session(s) revoked")


@clients.command("rotate-secret")
@click.option(
    "--overlap",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds the current secret keeps working.",
)
@_named
def rotate_secret(ctx: click.Context, name: str, overlap: float, as_json: bool) -> None:
    """Give confidential client NAME a new secret, printed once."""
    client, secret = facade(ctx).rotate_client_secret(name, overlap=overlap)
    if as_json:
        echo_json({"client_id": client.client_id, "client_secret": secret})
        return
    click.echo(f"client_secret: {secret}")
    until = f"for {overlap:g} more second(s)" if overlap else "no longer"
    click.echo(f"store it now: it is not shown again; the previous secret works {until}")
