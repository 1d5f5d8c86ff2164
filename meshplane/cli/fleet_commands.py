"""``meshplane status``: the replica the CLI talks to, its database and the duty lease."""

from __future__ import annotations

import click

from meshplane.cli import output
from meshplane.cli.common import output_option, run_client


@click.command()
@output_option("table", "json", "yaml")
@click.pass_context
def status(ctx: click.Context, fmt: str) -> None:
    """Show the control-plane replica (--server): its store backend and database, its revision
    and how far it lags the database's change feed, and which replica holds the duty lease
    (the one that runs registry lease expiry and automatic CA rotation).

    Exit code 0 when the replica has caught up with its database, 1 when it lags or cannot
    reach it.

    \b
    Examples:
      meshplane status
      meshplane --server http://cp-2.internal:8765 status -o json
    """
    state = run_client(ctx, lambda c: c.fleet())
    if fmt in ("json", "yaml"):
        output.dump(state, fmt)
    else:
        lease = state["dutyLease"]
        holder = lease["holder"] or "(none)"
        role = "duty lease holder" if lease["held"] else "follower"
        lag = "unknown" if state["lag"] is None else str(state["lag"])
        output.table(
            ["REPLICA", "ROLE", "BACKEND", "DATABASE", "REVISION", "LAG", "LEASE HOLDER"],
            [
                [
                    state["replica"],
                    role,
                    state["backend"],
                    state["database"],
                    str(state["revision"]),
                    lag,
                    holder,
                ]
            ],
        )
        if state["databaseError"]:
            output.err.print(f"database: {state['databaseError']}")
    if state["databaseError"] or state["lag"]:
        raise click.exceptions.Exit(output.EXIT_ERROR)
