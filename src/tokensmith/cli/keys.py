"""``tokensmith keys generate|rotate|list|jwks|revoke|reencrypt``."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import click

from tokensmith.cli.main import cli, echo_json, facade
from tokensmith.errors import ConfigError, TokensmithError
from tokensmith.keys import KeyRecord


@cli.group()
def keys() -> None:
    """Signing keys: pending → active → retired → removed."""


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _print_table(records: tuple[KeyRecord, ...] | list[KeyRecord]) -> None:
    click.echo(f"{'KID':<44} {'ALG':<6} {'STATE':<8} {'CREATED':<21} {'ACTIVATED':<21} RETIRED")
    for r in records:
        click.echo(
            f"{r.kid:<44} {r.alg:<6} {r.state:<8} {_when(r.created_at):<21} "
            f"{_when(r.activated_at):<21} {_when(r.retired_at)}"
        )


@keys.command()
@click.pass_context
def generate(ctx: click.Context) -> None:
    """Create the key store's keys if missing: an active key and the next (pending) one."""
    ts = facade(ctx)
    ts.keys.ensure_active()
    _print_table(ts.keys.records())


@keys.command()
@click.pass_context
def rotate(ctx: click.Context) -> None:
    """Make the pending key active now, retire the active one, create a new pending key."""
    active = facade(ctx).rotate_keys()
    click.echo(f"rotated: {active.kid} ({active.alg}) is now active")


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def list_keys(ctx: click.Context, as_json: bool) -> None:
    """Every key the store publishes, with its state and timestamps."""
    records = facade(ctx).keys.records()
    if as_json:
        echo_json([r.to_json() for r in records])
    else:
        _print_table(records)


@keys.command()
@click.pass_context
def jwks(ctx: click.Context) -> None:
    """Print the public JWK Set (what /.well-known/jwks.json serves)."""
    echo_json(facade(ctx).jwks())


@keys.command()
@click.argument("kid")
@click.pass_context
def revoke(ctx: click.Context, kid: str) -> None:
    """Emergency: stop publishing KID at once; if it was signing, the next key signs."""
    ts = facade(ctx)
    # A mistyped kid is the operator's error, not the server's.
    if kid not in {r.kid for r in ts.keys.records()}:
        raise click.BadParameter(f"no key with kid {kid!r}", param_hint="KID")
    removed = ts.keys.revoke(kid)
    click.echo(f"revoked: {removed.kid} (was {removed.state}); it is no longer published")
    try:
        ts.announce_key_revoked(kid)
    except TokensmithError as exc:
        # The key is gone already; remote verifiers still drop it when their JWKS expires.
        click.echo(f"warning: remote verifiers were not told: {exc.description}", err=True)


@keys.command()
@click.option(
    "--new-passphrase-env",
    metavar="VAR",
    help="Encrypt under the passphrase in environment variable VAR (never on the command line).",
)
@click.option("--new-passphrase", "prompt", is_flag=True, help="Prompt for a new passphrase.")
@click.pass_context
def reencrypt(ctx: click.Context, new_passphrase_env: str | None, prompt: bool) -> None:
    """Re-encrypt every private key and the refresh secret at the current KDF cost, or under
    a new passphrase. Restart every instance afterwards (with the new passphrase)."""
    new = None
    if new_passphrase_env is not None:
        new = os.environ.get(new_passphrase_env)
        if not new:
            raise ConfigError(f"{new_passphrase_env} is not set or empty")
    elif prompt:
        new = click.prompt("New passphrase", hide_input=True, confirmation_prompt=True)
    count = facade(ctx).reencrypt_keys(new, progress=click.echo)
    click.echo(f"done: {count} re-encrypted")
