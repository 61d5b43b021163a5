"""``brokermesh audit verify``: check the event store's hash chains and its witnesses.

Recomputes every event's hash from its predecessor's and its own contents and
reports each row where the chain, the version sequence or the payload does not
hold. Then holds the store against two witnesses on JetStream: the copy of
every event the outbox relay published (a row rewritten with its hashes
recomputed, a forged second copy, a row marked published without a copy), and
the ledger's signed, chained checkpoints of every stream's head (a stream cut
short, rewritten or deleted), verified with the ledger's public key
(``--chains-only`` skips both). Exits 0 when everything holds, 1 on any break,
and 2 when the database, NATS or the key cannot be read.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from brokermesh.cli.replay import add_database_url, database_url
from brokermesh.platform.layout import NATS_PORT, default_data_dir, nats_url_at

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from brokermesh.domain.audit import AuditReport, CheckpointRecord, PublishedCopies

#: Environment variable naming the NATS server, as the services read it.
NATS_URL_ENV = "BROKERMESH_NATS_URL"
#: The local platform's NATS server.
DEFAULT_NATS_URL = nats_url_at(NATS_PORT)
#: Environment variable naming the ledger's public checkpoint key.
CHECKPOINT_KEY_ENV = "BROKERMESH_CHECKPOINT_PUBLIC_KEY"
#: Where the local platform's ledger keeps its key pair, under the data directory.
LOCAL_CHECKPOINT_KEY = Path("ledger", "keys", "checkpoint-signing.pub.pem")


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
        "--checkpoint-key",
        type=Path,
        default=None,
        help=f"PEM file with the ledger's public checkpoint key (default: ${CHECKPOINT_KEY_ENV}, "
        f"else the local platform's, .brokermesh/{LOCAL_CHECKPOINT_KEY})",
    )
    verify.add_argument(
        "--chains-only",
        action="store_true",
        help="check the hash chains alone, without the copies and checkpoints on JetStream",
    )
    verify.set_defaults(func=main)


class _Unreadable(Exception):
    """A source the check needs cannot be read; the message says which and why."""


def main(args: argparse.Namespace) -> int:
    """Run ``audit verify``: 0 when the chain holds, 1 when it is broken, 2 on errors."""
    try:
        witnesses = None if args.chains_only else _Witnesses(_nats_url(args), _key(args))
        report = asyncio.run(_verify(database_url(args), witnesses))
    except _Unreadable as exc:
        print(f"audit verify failed: {exc}", file=sys.stderr)
        return 2
    return _print_report(report, anchored=witnesses is not None)


@dataclass(frozen=True, slots=True)
class _Witnesses:
    """Where the witnesses are: the NATS server, and the key that signs the checkpoints."""

    nats_url: str
    key: Ed25519PublicKey


def _nats_url(args: argparse.Namespace) -> str:
    return str(args.nats_url or os.environ.get(NATS_URL_ENV) or DEFAULT_NATS_URL)


def _key(args: argparse.Namespace) -> Ed25519PublicKey:
    from brokermesh.mesh.keys import load_public_key

    path = Path(
        args.checkpoint_key
        or os.environ.get(CHECKPOINT_KEY_ENV)
        or default_data_dir() / LOCAL_CHECKPOINT_KEY
    )
    try:
        return load_public_key(path)
    except (OSError, ValueError) as exc:
        raise _Unreadable(
            f"cannot read the ledger's public checkpoint key {path} ({exc}); name it with "
            "--checkpoint-key, or check the hash chains alone with --chains-only"
        ) from exc


async def _verify(dsn: str, witnesses: _Witnesses | None) -> AuditReport:
    # Imported here so that `brokermesh --help` does not load the database stack.
    import asyncpg

    from brokermesh.domain import audit

    try:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            if witnesses is None:
                return await audit.verify(conn)
            # The witnesses are read before the store: everything they hold was committed
            # before it is read, so a copy or a head without its row is a deletion, never a
            # race. Rows marked published after this moment need no copy yet.
            read_at: datetime = await conn.fetchval("SELECT clock_timestamp()")
            published, checkpoints = await _read_witnesses(witnesses)
            return await audit.verify(conn, published, checkpoints, witnesses_read_at=read_at)
        finally:
            await conn.close()
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise _Unreadable(f"cannot read the event store: {exc}") from exc


async def _read_witnesses(witnesses: _Witnesses) -> tuple[PublishedCopies, CheckpointRecord]:
    import nats
    import nats.errors

    from brokermesh.services.ledger.anchors import checkpoint_record, published_copies

    try:
        # nats-py reads max_reconnect_attempts=0 as "forever", also for the first
        # connect; one retry, then NoServersError, is what a one-shot check wants.
        client = await nats.connect(
            witnesses.nats_url,
            connect_timeout=5,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.5,
            error_cb=_ignore,
        )
        try:
            js = client.jetstream()
            return await published_copies(js), await checkpoint_record(js, witnesses.key)
        finally:
            await client.close()
    except (OSError, TimeoutError, ValueError, nats.errors.Error) as exc:
        raise _Unreadable(
            f"cannot read the published events from NATS at {witnesses.nats_url} ({exc!r}); "
            "--chains-only checks the hash chains alone"
        ) from exc


async def _ignore(error: Exception) -> None:
    """The connect errors end in NoServersError, reported once by the caller."""


def _print_report(report: AuditReport, *, anchored: bool) -> int:
    print(f"checked {report.streams} streams, {report.events} events")
    if anchored:
        print(f"{report.anchored} events checked against their copies on JetStream")
        print(
            f"{report.checkpoints} checkpoints read; {report.checkpointed} checkpointed stream "
            "heads found in the store"
        )
    else:
        print("hash chains only: copies and checkpoints on JetStream not checked")
    for found in report.breaks:
        if not found.stream_id:
            print(f"BROKEN: {found.problem}")
            continue
        print(
            f"BROKEN stream {found.stream_id} version {found.stream_version} "
            f"position {found.position}: {found.problem}"
        )
    if report.ok:
        print("hash chain intact")
        return 0
    print(f"{len(report.breaks)} break(s) found")
    return 1
