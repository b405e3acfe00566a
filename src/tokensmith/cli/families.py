"""``tokensmith families list --user S``: a user's sessions and their revocation trail."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

import click

from tokensmith.cli.main import cli, echo_json, facade


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@cli.group()
def families() -> None:
    """Sessions (refresh-token families)."""


@families.command("list")
@click.option("--user", "subject", required=True, help="The subject whose sessions to list.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def list_families(ctx: click.Context, subject: str, limit: int, as_json: bool) -> None:
    """The user's newest sessions: client, state, and every recorded revocation."""
    found = facade(ctx).families(subject, limit=limit)
    if as_json:
        echo_json([asdict(f) for f in found])
        return
    if not found:
        click.echo(f"no sessions for {subject}")
        return
    click.echo(f"{'FAMILY':<24} {'CLIENT':<16} {'CREATED':<21} {'STATE':<8} REVOCATIONS")
    for f in found:
        state = "revoked" if f.revoked_at is not None else "active"
        trail = "; ".join(
            f"{_when(r.revoked_at)} {r.reason}" + (f" by {r.actor}" if r.actor else "")
            for r in f.revocations
        )
        click.echo(
            f"{f.family_id:<24} {f.client_id:<16} {_when(f.created_at):<21} {state:<8} "
            f"{trail or '-'}"
        )
