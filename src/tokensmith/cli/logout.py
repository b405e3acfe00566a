"""``tokensmith logout deliver``: deliver due back-channel logouts now (README
"Back-channel logout"), for deployments that do not run ``tokensmith serve``."""

from __future__ import annotations

import click

from tokensmith.cli.main import cli, echo_json, facade
from tokensmith.logout.outbox import LOGOUT_BATCH

# Rounds of one run: each delivers at most LOGOUT_BATCH, so one call stays bounded.
_MAX_ROUNDS = 1000


@cli.group()
def logout() -> None:
    """Back-channel logout (OpenID Connect Back-Channel Logout 1.0)."""


@logout.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def deliver(ctx: click.Context, as_json: bool) -> None:
    """POST every due logout token once; failures are retried by a later run."""
    ts = facade(ctx)
    totals = {"delivered": 0, "retried": 0, "dropped": 0}
    for _ in range(_MAX_ROUNDS):
        report = ts.deliver_logouts()
        totals["delivered"] += report.delivered
        totals["retried"] += report.retried
        totals["dropped"] += report.dropped
        if report.delivered + report.retried + report.dropped < LOGOUT_BATCH:
            break
    outbox = ts.logout_outbox
    pending = 0 if outbox is None else outbox.pending_logouts()
    if as_json:
        echo_json({**totals, "pending": pending})
        return
    click.echo(
        f"delivered {totals['delivered']}, retried {totals['retried']}, "
        f"dropped {totals['dropped']}; {pending} waiting"
    )
