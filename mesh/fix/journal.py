"""A durable local journal of received execution reports, each kept until it has been recorded.

QuickFIX advances a session's incoming sequence number as soon as the application callback
returns, and after that the venue will never resend the message. An execution report is
therefore written here, and synced to disk, inside that callback: whatever happens to the
process afterwards, the report is either in this journal or will be resent by the venue.
Entries leave the journal only once their consumer has recorded them (:meth:`acknowledge`);
a report that can never be recorded is parked with its reason (:meth:`park`) and kept.

SQLite in WAL mode with ``synchronous=FULL`` makes every append durable when it returns. One
connection serves every thread, behind a lock: appends come from QuickFIX's threads, reads and
acknowledgements from the asyncio loop's worker threads.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

import quickfix

from brokermesh.mesh.fix.messages import Execution, FixError, parse_execution_report

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reports (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    venue          TEXT    NOT NULL,
    raw            TEXT    NOT NULL,
    received_at    TEXT    NOT NULL,
    parked_at      TEXT,
    parked_reason  TEXT
)
"""


class JournalError(FixError):
    """The journal cannot be opened or written."""


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One received execution report: its arrival number, session and raw FIX text."""

    seq: int
    venue: str
    raw: str
    received_at: datetime

    def execution(self) -> Execution:
        """The parsed report; raises FixMessageError naming the first bad tag."""
        return parse_execution_report(quickfix.Message(self.raw, False))


@dataclass(frozen=True, slots=True)
class ParkedEntry:
    """A report that could not be recorded, and why."""

    entry: JournalEntry
    parked_at: datetime
    reason: str


class ExecutionJournal:
    """The journal file at ``path``; open it before use, close it after."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        """Open (creating if needed) the journal; a second call is a no-op."""
        with self._lock:
            if self._db is not None:
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                db.execute("PRAGMA synchronous=FULL")
                db.execute(_SCHEMA)
            except (OSError, sqlite3.Error) as exc:
                raise JournalError(f"cannot open the execution journal {self.path}: {exc}") from exc
            if mode != "wal":
                db.close()
                raise JournalError(f"{self.path} refused WAL mode (got {mode!r})")
            self._db = db

    def close(self) -> None:
        """Close the journal; safe to call more than once."""
        with self._lock:
            db, self._db = self._db, None
        if db is not None:
            db.close()

    def append(self, venue: str, raw: str) -> int:
        """Keep one received report; it is on disk when this returns. Returns its number."""
        now = datetime.now(UTC).isoformat()
        with self._lock:
            cursor = self._run(
                "INSERT INTO reports (venue, raw, received_at) VALUES (?, ?, ?)", venue, raw, now
            )
        return int(cursor.lastrowid or 0)

    def pending(self, limit: int = 100) -> list[JournalEntry]:
        """Up to ``limit`` reports not yet acknowledged nor parked, oldest first."""
        with self._lock:
            rows = self._run(
                "SELECT seq, venue, raw, received_at FROM reports "
                "WHERE parked_at IS NULL ORDER BY seq LIMIT ?",
                limit,
            ).fetchall()
        return [_entry(row) for row in rows]

    def acknowledge(self, seq: int) -> None:
        """Forget report ``seq``: its consumer has recorded it. Idempotent."""
        with self._lock:
            self._run("DELETE FROM reports WHERE seq = ?", seq)

    def park(self, seq: int, reason: str) -> None:
        """Set report ``seq`` aside for good, with ``reason``; it is kept, never forwarded."""
        now = datetime.now(UTC).isoformat()
        with self._lock:
            self._run(
                "UPDATE reports SET parked_at = ?, parked_reason = ? "
                "WHERE seq = ? AND parked_at IS NULL",
                now,
                reason,
                seq,
            )

    def parked(self) -> list[ParkedEntry]:
        """Every parked report, oldest first."""
        with self._lock:
            rows = self._run(
                "SELECT seq, venue, raw, received_at, parked_at, parked_reason FROM reports "
                "WHERE parked_at IS NOT NULL ORDER BY seq"
            ).fetchall()
        return [
            ParkedEntry(
                entry=_entry(row[:4]), parked_at=datetime.fromisoformat(row[4]), reason=row[5]
            )
            for row in rows
        ]

    def _run(self, sql: str, *params: object) -> sqlite3.Cursor:
        if self._db is None:
            raise JournalError(f"the execution journal {self.path} is not open")
        try:
            return self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise JournalError(f"execution journal {self.path}: {exc}") from exc


def _entry(row: tuple[int, str, str, str]) -> JournalEntry:
    seq, venue, raw, received_at = row
    return JournalEntry(
        seq=seq, venue=venue, raw=raw, received_at=datetime.fromisoformat(received_at)
    )
