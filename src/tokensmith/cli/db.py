"""``tokensmith db upgrade|cleanup``."""

from __future__ import annotations

import click

from tokensmith.cli.main import cli, facade


@cli.group()
def db() -> None:
    """The refresh-token database."""


@db.command()
@click.pass_context
def upgrade(ctx: click.Context) -> None:
    """Apply every pending migration (safe to run repeatedly)."""
    ts = facade(ctx)
    applied = ts.migrate()  # also moves a refresh secret out of the database (SECURITY B1)
    for revision in applied:
        click.echo(f"applied {revision}")
    settings = ts.settings
    state = "upgraded" if applied else "already up to date"
    click.echo(f"database {state}: {_safe_url(settings.database_url)}")


@db.command()
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 10_000))
@click.pass_context
def cleanup(ctx: click.Context, batch_size: int) -> None:
    """Purge rows of expired families in small batches."""
    removed = facade(ctx).cleanup(batch_size=batch_size)
    click.echo(f"removed {removed} expired row(s)")


def _safe_url(url: str) -> str:
    """The URL without its password, for output."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
