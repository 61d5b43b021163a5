"""``brokermesh audit verify``: check the event store's hash chains.

Recomputes every event's hash from its predecessor's and its own contents and
reports each row where the chain, the version sequence or the payload does not
hold. Then holds every event against the copy the outbox relay published on
JetStream, so a row rewritten with its hashes recomputed is caught as well
(``--chains-only`` skips this step). Exits 0 when every stream verifies, 1 when
any does not, and 2 when the database or NATS cannot be read.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import TYPE_CHECKING

from brokermesh.cli.replay import add_database_url, database_url
from brokermesh.platform.layout import NATS_PORT, nats_url_at

if TYPE_CHECKING:
    from brokermesh.domain.audit import AuditReport, PublishedCopy

#: Environment variable naming the NATS server, as the services read it.
NATS_URL_ENV = "BROKERMESH_NATS_URL"
#: The local platform's NATS server.
DEFAULT_NATS_URL = nats_url_at(NATS_PORT)


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
    verify.add_argument(
        "--nats-url",
        default=None,
        help=f"NATS server holding the published events (default: ${NATS_URL_ENV}, "
        f"else {DEFAULT_NATS_URL})",
    )
    verify.add_argument(
        "--chains-only",
        action="store_true",
        help="check the hash chains alone, without the copies published on JetStream",
    )
    verify.set_defaults(func=main)


class _Unreadable(Exception):
    """A source the check needs cannot be read; the message says which and why."""


def main(args: argparse.Namespace) -> int:
    """Run ``audit verify``: 0 when the chain holds, 1 when it is broken, 2 on errors."""
    nats_url = None if args.chains_only else _nats_url(args)
    try:
        report = asyncio.run(_verify(database_url(args), nats_url))
    except _Unreadable as exc:
        print(f"audit verify failed: {exc}", file=sys.stderr)
        return 2
    return _print_report(report, anchored=nats_url is not None)


def _nats_url(args: argparse.Namespace) -> str:
    return args.nats_url or os.environ.get(NATS_URL_ENV) or DEFAULT_NATS_URL


async def _verify(dsn: str, nats_url: str | None) -> AuditReport:
    # Imported here so that `brokermesh --help` does not load the database stack.
    import asyncpg

    from brokermesh.domain import audit

    # The copies are read first: everything published then was committed before the
    # store is read, so a copy without its row is a deletion, never a race.
    published = None if nats_url is None else await _published(nats_url)
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            return await audit.verify(conn, published)
        finally:
            await conn.close()
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise _Unreadable(f"cannot read the event store: {exc}") from exc


async def _published(nats_url: str) -> dict[str, PublishedCopy]:
    import nats
    import nats.errors

    from brokermesh.services.ledger.anchors import published_copies

    try:
        # nats-py reads max_reconnect_attempts=0 as "forever", also for the first
        # connect; one retry, then NoServersError, is what a one-shot check wants.
        client = await nats.connect(
            nats_url,
            connect_timeout=5,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.5,
            error_cb=_ignore,
        )
        try:
            return await published_copies(client.jetstream())
        finally:
            await client.close()
    except (OSError, TimeoutError, ValueError, nats.errors.Error) as exc:
        raise _Unreadable(
            f"cannot read the published events from NATS at {nats_url} ({exc!r}); "
            "--chains-only checks the hash chains alone"
        ) from exc


async def _ignore(error: Exception) -> None:
    """The connect errors end in NoServersError, reported once by the caller."""


def _print_report(report: AuditReport, *, anchored: bool) -> int:
    print(f"checked {report.streams} streams, {report.events} events")
    if anchored:
        print(f"{report.anchored} events checked against their copies on JetStream")
    else:
        print("hash chains only: copies on JetStream not checked")
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
