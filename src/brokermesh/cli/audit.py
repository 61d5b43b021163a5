"""``brokermesh audit verify``: check the event store's hash chains.

Recomputes every event's hash from its predecessor's and its own contents and
reports each row where the chain, the version sequence or the payload does not
hold. Exits 0 when every stream verifies and 1 when any does not.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from brokermesh.cli.replay import add_database_url, database_url

if TYPE_CHECKING:
    from brokermesh.domain.audit import AuditReport


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``audit`` command, with its ``verify`` action, to the ``brokermesh`` parser."""
    parser = subparsers.add_parser("audit", help="audit the order event store")
    actions = parser.add_subparsers(dest="audit_action", metavar="ACTION", required=True)
    verify = actions.add_parser(
        "verify",
        help="verify the hash chain of every order stream",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    add_database_url(verify)
    verify.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run ``audit verify``: 0 when the chain holds, 1 when it is broken, 2 on errors."""
    # Imported here so that `brokermesh --help` does not load the database stack.
    import asyncpg

    try:
        report = asyncio.run(_verify(database_url(args)))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(f"audit verify failed: {exc}", file=sys.stderr)
        return 2
    return _print_report(report)


async def _verify(dsn: str) -> AuditReport:
    import asyncpg

    from brokermesh.domain import audit

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await audit.verify(conn)
    finally:
        await conn.close()


def _print_report(report: AuditReport) -> int:
    print(f"checked {report.streams} streams, {report.events} events")
    for found in report.breaks:
        print(
            f"BROKEN stream {found.stream_id} version {found.stream_version} "
            f"position {found.position}: {found.problem}"
        )
    if report.ok:
        print("hash chain intact")
        return 0
    print(f"{len(report.breaks)} break(s) found")
    return 1
