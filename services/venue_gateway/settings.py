"""Settings of the venue gateway."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from brokermesh.mesh.config import ServiceSettings


@dataclass(frozen=True, kw_only=True, slots=True)
class VenueGatewaySettings(ServiceSettings):
    #: FIX endpoints by venue service, "venue-xnas=127.0.0.1:9881,venue-arca=127.0.0.1:9882".
    venue_fix_ports: str = "venue-xnas=127.0.0.1:9881,venue-arca=127.0.0.1:9882"
    #: Our SenderCompID on every venue session.
    sender_comp_id: str = "BROKERMESH"
    #: FIX heartbeat interval.
    heartbeat_s: int = 10
    #: Seconds between reconnection attempts to a venue.
    reconnect_interval_s: int = 1
    #: Seconds start-up waits for each venue's logon before serving without it.
    logon_timeout_s: float = 10.0

    @property
    def journal_path(self) -> Path:
        """Where received execution reports are kept until trade capture has recorded them."""
        return self.data_dir / "journal" / "executions.sqlite3"
