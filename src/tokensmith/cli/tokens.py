"""``tokensmith token issue|verify`` and ``tokensmith revoke``."""

from __future__ import annotations

import json
from typing import Any

import click

from tokensmith.cli.main import cli, echo_json, facade, token_value
from tokensmith.clients import checked_scope
from tokensmith.facade import Tokensmith
from tokensmith.tokens.jws import parse_json_object


@cli.group()
def token() -> None:
    """Issue and inspect tokens."""


@token.command()
@click.option("--sub", "subject", required=True, help="Subject (user id).")
@click.option("--client", "client_id", required=True, help="Client id.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    help="Scope(s), space-separated; repeat to add more. Default: openid.",
)
@click.option("--aud", "audience", multiple=True, help="Audience; repeat for several.")
@click.option(
    "--claim",
    "claim_args",
    multiple=True,
    metavar="NAME=VALUE",
    help="Access-token claim; VALUE is JSON if it parses, else a string. Repeatable.",
)
@click.option("--claims-json", help="Access-token claims as one JSON object.")
@click.option(
    "--dpop-jkt",
    help="Bind the tokens to this DPoP key (RFC 7638 thumbprint; RFC 9449 §6.1).",
)
@click.option(
    "--unregistered",
    is_flag=True,
    help="Allow a client id that is not registered (no scope or audience check).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the token endpoint's JSON body.")
@click.pass_context
def issue(
    ctx: click.Context,
    subject: str,
    client_id: str,
    scopes: tuple[str, ...],
    audience: tuple[str, ...],
    claim_args: tuple[str, ...],
    claims_json: str | None,
    dpop_jkt: str | None,
    unregistered: bool,
    as_json: bool,
) -> None:
    """Start a session for SUB and print its tokens (a new refresh-token family). The
    client's registration bounds the scopes and audiences, as at the token endpoint; claims
    given are kept with the session and carried to every refreshed token."""
    ts = facade(ctx)
    scope = checked_scope(" ".join(scopes or ("openid",)))
    _check_registration(ts, client_id, scope, audience, unregistered=unregistered)
    response = ts.issue(
        subject=subject,
        client_id=client_id,
        scope=scope,
        audience=audience or None,
        claims=_claims(claims_json, claim_args) or None,
        dpop_jkt=dpop_jkt,
    )
    if as_json:
        echo_json(response.to_dict())
        return
    for name, value in response.to_dict().items():
        click.echo(f"{name}: {value}")


def _claims(claims_json: str | None, claim_args: tuple[str, ...]) -> dict[str, Any]:
    """``--claims-json``'s object, then each ``--claim`` on top of it."""
    claims: dict[str, Any] = {}
    if claims_json is not None:
        try:
            claims = json.loads(claims_json)
        except ValueError:
            raise click.BadParameter("not valid JSON", param_hint="--claims-json") from None
        if not isinstance(claims, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--claims-json")
    for arg in claim_args:
        name, sep, text = arg.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{arg!r} is not NAME=VALUE", param_hint="--claim")
        try:
            claims[name] = json.loads(text)
        except ValueError:
            claims[name] = text
    return claims


def _check_registration(
    ts: Tokensmith,
    client_id: str,
    scope: str,
    audience: tuple[str, ...],
    *,
    unregistered: bool,
) -> None:
    """The facade trusts its caller; an operator's command line is checked like a client's
    request (README "Clients": scopes and audiences are deny-by-default)."""
    client = ts.clients.get_client(client_id)
    if client is None:
        if unregistered:
            return
        raise click.UsageError(
            f"no registered client {client_id!r} (register it, or pass --unregistered)"
        )
    if not client.allows_scope(scope):
        extra = sorted(set(scope.split()) - set(client.scopes))
        raise click.UsageError(f"scope {' '.join(extra)!r} is not registered for {client_id!r}")
    for aud in audience:
        if not client.allows_audience(aud):
            raise click.UsageError(f"audience {aud!r} is not registered for {client_id!r}")


@token.command()
@click.argument("jwt", callback=token_value)
@click.option("--aud", "audience", help="Expected audience (default: the issuer).")
@click.option(
    "--check-revoked/--no-check-revoked",
    default=True,
    show_default=True,
    help="Consult the revocation list in the database.",
)
@click.pass_context
def verify(ctx: click.Context, jwt: str, audience: str | None, check_revoked: bool) -> None:
    """Verify an access token strictly and print its header and claims. JWT ``-`` reads
    the token from standard input (keeps it out of argv and the shell history)."""
    ts = facade(ctx)
    claims = ts.verify_access_token(
        jwt, audience=audience or ts.settings.issuer, check_revoked=check_revoked
    )
    header = parse_json_object(jwt.split(".", 1)[0])
    echo_json({"valid": True, "header": header, "claims": claims})


@cli.command()
@click.option(
    "--token",
    "refresh_token",
    callback=token_value,
    help="A refresh token: revokes its whole family; `-` reads it from standard input.",
)
@click.option("--family", "family_id", help="A family (session) id, the tokens' `sid`.")
@click.option("--user", "subject", help="A subject: ends every session of the user.")
@click.pass_context
def revoke(
    ctx: click.Context, refresh_token: str | None, family_id: str | None, subject: str | None
) -> None:
    """Revoke a refresh-token family, or every session of a user."""
    given = [v for v in (refresh_token, family_id, subject) if v is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --token, --family, --user")
    ts = facade(ctx)
    # Revoking nothing is a failure, so a script that names the wrong token or family
    # learns it from the exit status (issue #13).
    if refresh_token is not None:
        if not ts.revoke_refresh_token(refresh_token):
            raise click.ClickException("no such active refresh token")
        click.echo("revoked the token's family")
    elif family_id is not None:
        if not ts.revoke_family(family_id):
            raise click.ClickException(f"no active family {family_id}")
        click.echo(f"revoked family {family_id}")
    else:
        count = ts.revoke_subject(subject or "")
        click.echo(f"revoked {count} session(s) of {subject}")
