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
    and how far it lags the database's change feed, which replica holds the duty lease
    (the one that runs registry lease expiry and automatic CA rotation), and its xDS worker
    processes (serve --xds-workers N): pid, revision, connected proxies, restarts.

    Exit code 0 when the replica has caught up with its database, 1 when it lags or cannot
    reach it, or when one of its xDS workers does not answer.

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
        workers = state.get("xdsWorkers") or []
        if workers:
            output.out.print()
            output.table(
                ["XDS WORKER", "PID", "STATE", "REVISION", "PROXIES", "RESTARTS"],
                [
                    [
                        str(w["worker"]),
                        str(w["pid"]),
                        "serving" if w["alive"] else "not answering",
                        "-" if w["revision"] is None else str(w["revision"]),
                        "-" if w["proxies"] is None else str(w["proxies"]),
                        str(w["restarts"]),
                    ]
                    for w in workers
                ],
            )
        if state["databaseError"]:
            output.err.print(f"database: {state['databaseError']}")
    down = [w for w in state.get("xdsWorkers") or [] if not w["alive"]]
    if state["databaseError"] or state["lag"] or down:
        raise click.exceptions.Exit(output.EXIT_ERROR)
