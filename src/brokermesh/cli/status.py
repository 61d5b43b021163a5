"""``brokermesh status``: the health and address of every platform component."""

from __future__ import annotations

import argparse
import json
from typing import Any

from brokermesh.cli.up import split_names
from brokermesh.platform.layout import add_layout_arguments, layout_from_args


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "status",
        help="show the health of every component",
        description="Check PostgreSQL (select 1), NATS (JetStream health), each service (gRPC "
        "health) and the gateway's HTTP /healthz. Exits 1 if anything is down.",
    )
    add_layout_arguments(parser)
    parser.add_argument(
        "--json",
        action="store_true",
        help="print a JSON list of {component, address, status, detail}",
    )
    parser.add_argument(
        "--only",
        type=split_names,
        default=(),
        metavar="NAME,NAME",
        help="check only these components (postgresql, nats, service names); "
        "default: what `up` runs in --data-dir, else everything",
    )
    parser.add_argument("--pg-dsn", help="PostgreSQL DSN to check instead of the platform's")
    parser.add_argument("--nats-url", help="NATS client URL to show instead of the platform's")
    parser.add_argument(
        "--nats-monitor-url", help="NATS monitoring URL to check instead of the platform's"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="per-check timeout (default 2)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from brokermesh.platform import PlatformError
    from brokermesh.platform.layout import read_state
    from brokermesh.platform.status import (
        NATS,
        POSTGRES,
        Targets,
        check_all,
        format_table,
        service_targets,
    )
    from brokermesh.services.registry import MANIFESTS

    layout = layout_from_args(args)
    # Explicit names, else what a running `up` started, else everything.
    state = read_state(layout.data_dir) or {}
    known = {POSTGRES, NATS, *(m.name for m in MANIFESTS)}
    if args.only:
        unknown = sorted(set(args.only) - known)
        if unknown:
            raise PlatformError(
                f"unknown component(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        wanted = set(args.only)
    elif "services" in state:
        wanted = {POSTGRES, NATS, *state["services"]}
    else:
        wanted = known

    targets = Targets(
        postgres_dsn=(args.pg_dsn or layout.app_dsn) if POSTGRES in wanted else None,
        nats_url=args.nats_url or layout.nats_url,
        nats_monitor_url=(args.nats_monitor_url or layout.nats_monitor_url)
        if NATS in wanted
        else None,
        services=service_targets(layout, [m for m in MANIFESTS if m.name in wanted]),
    )
    rows = asyncio.run(check_all(targets, timeout_s=args.timeout))
    if args.json:
        print(json.dumps([row.as_dict() for row in rows], indent=2))
    else:
        print(format_table(rows))
    return 0 if rows and all(row.up for row in rows) else 1
