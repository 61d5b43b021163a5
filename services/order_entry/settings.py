"""Settings of the order entry service."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from brokermesh.mesh.config import ServiceSettings


@dataclass(frozen=True, kw_only=True, slots=True)
class OrderEntrySettings(ServiceSettings):
    #: Orders worked on at once; more are shed with RESOURCE_EXHAUSTED (HTTP 429 at the
    #: gateway). Each order costs every service on the path some CPU, so a queue longer than
    #: the platform drains within the latency budget only turns every order into a late one.
    max_in_flight: int = dataclasses.field(default=16, metadata={"min": 0})
    #: Connections kept open to PostgreSQL.
    db_pool_size: int = 8
    #: Recent (account, client order id) pairs remembered to answer repeats without work.
    recent_requests: int = 50_000
