"""The broker side of FIX: one session per venue, execution reports kept in a durable journal."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

import quickfix

from brokermesh.mesh.fix.engine import FixEngine, FixSessionConfig, target_of
from brokermesh.mesh.fix.journal import ExecutionJournal, JournalError
from brokermesh.mesh.fix.messages import (
    MSG_TYPE_EXECUTION_REPORT,
    MSG_TYPE_NEW_ORDER_SINGLE,
    msg_type,
)

_logger = logging.getLogger(__name__)

_TAG_POSS_DUP_FLAG = 43

#: Exit status when a received execution report cannot be journaled (EX_TEMPFAIL).
EXIT_JOURNAL_FAILED = 75


class FixInitiator(FixEngine):
    """The broker side: one session per venue; every execution report goes into ``journal``.

    A report is appended to the journal on the QuickFIX thread that received it, before the
    callback returns and so before QuickFIX advances the session's incoming sequence number;
    ``on_report()`` then runs on the asyncio loop to say the journal holds something new. When
    the journal cannot take a report the process exits at once: after a restart the venue
    resends what was not acknowledged, whereas carrying on would lose the report for good.

    Orders are never replayed on a ResendRequest (they are gap-filled instead): a stale order
    reaching a venue after a reconnect is worse than a lost one, which reconciliation finds.
    """

    _connection_type = "initiator"

    def __init__(
        self,
        sessions: Sequence[FixSessionConfig],
        *,
        journal: ExecutionJournal,
        on_report: Callable[[], None],
    ) -> None:
        super().__init__(sessions)
        self._journal = journal
        self._on_report = on_report

    async def start(self) -> None:
        """Open the journal if its owner has not, then connect to every venue."""
        self._journal.open()
        await super().start()

    def suppress_resend(self, message: quickfix.Message, session_id: quickfix.SessionID) -> bool:
        """Engine thread: drop NewOrderSingles QuickFIX would replay with PossDupFlag=Y."""
        header = message.getHeader()
        possible_duplicate = header.isSetField(_TAG_POSS_DUP_FLAG) and (
            header.getField(_TAG_POSS_DUP_FLAG) == "Y"
        )
        return possible_duplicate and msg_type(message) == MSG_TYPE_NEW_ORDER_SINGLE

    def receive_app_message(
        self, message: quickfix.Message, session_id: quickfix.SessionID
    ) -> None:
        """Engine thread: journal an execution report durably, then tell the loop."""
        venue = target_of(session_id)
        kind = msg_type(message)
        if kind != MSG_TYPE_EXECUTION_REPORT:
            _logger.warning("ignoring FIX message type %r from %s", kind, venue)
            return
        try:
            self._journal.append(venue, message.toString())
        except JournalError:
            _logger.critical(
                "cannot journal an execution report from %s; exiting so that the venue "
                "resends it after the restart",
                venue,
                exc_info=True,
            )
            logging.shutdown()
            os._exit(EXIT_JOURNAL_FAILED)
        self._post(self._on_report)
