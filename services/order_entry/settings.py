"""Settings of the order entry service."""

from __future__ import annotations

from dataclasses import dataclass

from brokermesh.mesh.config import ServiceSettings


@dataclass(frozen=True, kw_only=True, slots=True)
class OrderEntrySettings(ServiceSettings):
    #: Connections kept open to PostgreSQL.
    db_pool_size: int = 8
    #: Recent (account, client order id) pairs remembered to answer repeats without work.
    recent_requests: int = 50_000
