"""``brokermesh migrate``: apply the SQL migrations and reference data to a database."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from brokermesh.platform.layout import add_layout_arguments, layout_from_args


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "migrate",
        help="apply the database migrations",
        description="Apply brokermesh/migrations/NNNN_*.sql in order (each once, tracked in "
        "schema_migrations) and upsert the shipped securities. Connects as the "
        "schema owner: --dsn, else the local platform's PostgreSQL.",
    )
    add_layout_arguments(parser)
    parser.add_argument("--dsn", help="owner DSN (default: the local platform's superuser)")
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        metavar="PATH",
        help="migrations directory (default: the shipped migrations)",
    )
    parser.add_argument(
        "--skip-reference-data", action="store_true", help="do not upsert the securities"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from brokermesh.platform import PlatformError
    from brokermesh.platform.migrate import apply_migrations

    dsn = args.dsn or layout_from_args(args).owner_dsn
    try:
        report = asyncio.run(
            apply_migrations(dsn, args.dir, load_reference_data=not args.skip_reference_data)
        )
    except OSError as exc:
        raise PlatformError(
            f"cannot reach PostgreSQL at {dsn} ({exc}); start the platform "
            "with `brokermesh up` or pass --dsn"
        ) from exc
    for name in report.applied:
        print(f"applied {name}")
    print(
        f"{len(report.applied)} applied, {len(report.already_applied)} already applied, "
        f"{report.securities} securities loaded"
    )
    return 0
