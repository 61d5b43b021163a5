"""Tests of the execution journal on a real SQLite file: durable, ordered, nothing dropped."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from brokermesh.mesh.fix.journal import ExecutionJournal, JournalError
from brokermesh.mesh.fix.messages import ExecType, Execution, OrdStatus, Side, execution_report


def raw_report(cl_ord_id: str, exec_id: str) -> str:
    execution = Execution(
        cl_ord_id=cl_ord_id,
        venue_order_id="XNAS-O1",
        exec_id=exec_id,
        exec_type=ExecType.FILL,
        order_status=OrdStatus.FILLED,
        symbol="AAPL",
        side=Side.BUY,
        last_qty=100,
        last_price=Decimal("189.50"),
        cum_qty=100,
        leaves_qty=0,
        avg_price=Decimal("189.50"),
        text="",
        transact_time=datetime(2026, 3, 16, 14, 30, tzinfo=UTC),
    )
    return str(execution_report(execution).toString())


def test_a_report_is_pending_until_it_is_acknowledged(tmp_path: Path) -> None:
    # Arrange
    with ExecutionJournal(tmp_path / "j.sqlite3") as journal:
        seq = journal.append("XNAS", raw_report("ORD-1", "E1"))

        # Act
        before = journal.pending()
        journal.acknowledge(seq)
        after = journal.pending()

    # Assert
    assert [(e.seq, e.venue, e.execution().exec_id) for e in before] == [(seq, "XNAS", "E1")]
    assert after == []


def test_reports_come_back_in_arrival_order_after_a_reopen(tmp_path: Path) -> None:
    # Arrange
    path = tmp_path / "j.sqlite3"
    with ExecutionJournal(path) as journal:
        for number in range(1, 4):
            journal.append("ARCA", raw_report(f"ORD-{number}", f"E{number}"))

    # Act
    with ExecutionJournal(path) as reopened:
        entries = reopened.pending(limit=2)

    # Assert
    assert [entry.execution().cl_ord_id for entry in entries] == ["ORD-1", "ORD-2"]


def test_a_report_outlives_a_process_killed_right_after_appending_it(tmp_path: Path) -> None:
    # Arrange: a child appends one report and dies at once, closing nothing.
    path = tmp_path / "j.sqlite3"
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from brokermesh.mesh.fix.journal import ExecutionJournal\n"
        "journal = ExecutionJournal(Path(sys.argv[1]))\n"
        "journal.open()\n"
        "journal.append('XNAS', sys.argv[2])\n"
        "os._exit(9)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    # Act
    done = subprocess.run(
        [sys.executable, "-c", script, str(path), raw_report("ORD-5", "E5")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )

    # Assert
    assert done.returncode == 9, done.stderr
    with ExecutionJournal(path) as journal:
        [entry] = journal.pending()
    assert entry.execution().cl_ord_id == "ORD-5"


def test_a_parked_report_is_kept_with_its_reason_and_no_longer_pending(tmp_path: Path) -> None:
    # Arrange
    with ExecutionJournal(tmp_path / "j.sqlite3") as journal:
        bad = journal.append("XNAS", raw_report("ORD-1", "E1"))
        good = journal.append("XNAS", raw_report("ORD-2", "E2"))

        # Act
        journal.park(bad, "trade capture refused it: INVALID_ARGUMENT: fill.price")
        pending = journal.pending()
        parked = journal.parked()

    # Assert
    assert [entry.seq for entry in pending] == [good]
    assert [(p.entry.seq, p.reason) for p in parked] == [
        (bad, "trade capture refused it: INVALID_ARGUMENT: fill.price")
    ]


def test_the_journal_file_is_in_write_ahead_log_mode(tmp_path: Path) -> None:
    # Arrange
    path = tmp_path / "j.sqlite3"

    # Act
    with ExecutionJournal(path) as journal:
        journal.append("XNAS", raw_report("ORD-1", "E1"))

    # Assert
    outside = sqlite3.connect(path)
    try:
        assert outside.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        outside.close()


def test_a_journal_that_is_not_open_refuses_appends_naming_its_file(tmp_path: Path) -> None:
    # Arrange
    journal = ExecutionJournal(tmp_path / "j.sqlite3")

    # Act / Assert
    with pytest.raises(JournalError, match=r"j\.sqlite3 is not open"):
        journal.append("XNAS", raw_report("ORD-1", "E1"))


def test_a_journal_that_cannot_be_created_fails_naming_its_file(tmp_path: Path) -> None:
    # Arrange: its folder would have to be where a file already is.
    blocker = tmp_path / "taken"
    blocker.write_text("")

    # Act / Assert
    with pytest.raises(JournalError, match="taken"):
        ExecutionJournal(blocker / "j.sqlite3").open()
