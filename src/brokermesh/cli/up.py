"""``brokermesh up``: run PostgreSQL, NATS and every service locally until Ctrl-C."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from brokermesh.platform.layout import add_layout_arguments, default_data_dir


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "up",
        help="run the platform locally",
        description="Start PostgreSQL and NATS, apply migrations and JetStream assets, then run "
        "every service until Ctrl-C or SIGTERM. A control-plane process that exits is restarted; "
        "a data-plane process that exits stops everything.",
    )
    add_layout_arguments(parser, remembered_offset=False)
    parser.add_argument(
        "--only",
        type=split_names,
        default=(),
        metavar="NAME,NAME",
        help="start only these services (PostgreSQL and NATS always start)",
    )
    parser.add_argument(
        "--health-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="stop everything if a service is not SERVING by then (default 60)",
    )
    parser.add_argument(
        "--restart-delay",
        type=_positive_seconds,
        default=1.0,
        metavar="SECONDS",
        help="wait before restarting an exited control-plane process; doubles with each "
        "quick exit, up to 30 (default 1)",
    )
    parser.add_argument(
        "--log-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="write each service's log to DIR/<service>.log instead of relaying every line "
        "to this terminal with the service's name as prefix (the benchmarks do, so that the "
        "relay's own CPU time does not count against the platform)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: the supervisor pulls in honcho, grpc and the service registry.
    from brokermesh.platform.supervisor import UpOptions, up

    # Not layout_from_args: a fresh `up` starts at the offset it is given, or 0.
    data_dir = args.data_dir or default_data_dir()
    return up(
        UpOptions(
            data_dir=data_dir,
            port_offset=args.port_offset or 0,
            only=args.only,
            health_timeout_s=args.health_timeout,
            restart_delay_s=args.restart_delay,
            log_dir=args.log_dir.resolve() if args.log_dir else None,
        )
    )


def split_names(text: str) -> tuple[str, ...]:
    """``"oms, risk"`` -> ``("oms", "risk")``."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value
