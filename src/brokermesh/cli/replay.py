"""``brokermesh replay``: rebuild the order view read model from the event store.

Deletes every row of ``order_views`` and folds each order's stream again, in
one transaction, so readers see the old views until the new ones are complete.
``--check`` only compares the live views with a fresh fold and changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import TYPE_CHECKING

from brokermesh.platform.layout import OWNER_ROLE, POSTGRES_PORT, postgres_dsn

if TYPE_CHECKING:
    from brokermesh.services.ledger.replay import ReplayDiff

#: Environment variable naming the database, as the services read it.
DATABASE_URL_ENV = "BROKERMESH_DATABASE_URL"
#: The local platform's database, as its owner.
DEFAULT_DATABASE_URL = postgres_dsn(OWNER_ROLE, POSTGRES_PORT)


def add_database_url(parser: argparse.ArgumentParser) -> None:
    """Add ``--database-url``; :func:`database_url` resolves its default at run time."""
    parser.add_argument(
        "--database-url",
        default=None,
        help=f"PostgreSQL DSN (default: ${DATABASE_URL_ENV}, else {DEFAULT_DATABASE_URL})",
    )


def database_url(args: argparse.Namespace) -> str:
    """The DSN to use: the flag, else the environment, else the local platform's."""
    return args.database_url or os.environ.get(DATABASE_URL_ENV) or DEFAULT_DATABASE_URL


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``replay`` command to the ``brokermesh`` parser."""
    parser = subparsers.add_parser(
        "replay",
        help="rebuild order_views from the event store",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    add_database_url(parser)
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare the live views with a fresh fold; change nothing",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run the command; 0 on success, 1 when ``--check`` finds differences, 2 on errors."""
    # Imported here so that `brokermesh --help` does not load the database stack.
    import asyncpg

    from brokermesh.mesh.errors import MeshError

    try:
        return asyncio.run(_run(database_url(args), check=args.check))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(f"replay failed: {exc}", file=sys.stderr)
        return 2
    except MeshError as exc:
        # A stream the fold refuses (gap, illegal transition): the rebuild rolled back whole.
        print(f"replay refused, order_views unchanged: {exc}", file=sys.stderr)
        return 2


async def _run(dsn: str, *, check: bool) -> int:
    import asyncpg

    from brokermesh.services.ledger import replay

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        if check:
            return _print_diff(await replay.compare(conn))
        report = await replay.rebuild(conn)
    finally:
        await conn.close()

    print(
        f"rebuilt {report.streams} order views from {report.events} events "
        f"({report.deleted} views replaced)"
    )
    return 0


def _print_diff(diff: ReplayDiff) -> int:
    print(f"compared {diff.streams} streams with the live order views")
    for label, order_ids in (
        ("missing", diff.missing),
        ("extra", diff.extra),
        ("different", diff.different),
    ):
        for order_id in order_ids:
            print(f"  {label}: {order_id}")
    print("live views match the event store" if diff.ok else "live views differ")
    return 0 if diff.ok else 1
