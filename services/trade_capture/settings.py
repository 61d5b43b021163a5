"""Settings of the trade capture service."""

from __future__ import annotations

from dataclasses import dataclass

from brokermesh.mesh.config import ServiceSettings


@dataclass(frozen=True, kw_only=True, slots=True)
class TradeCaptureSettings(ServiceSettings):
    #: Seconds a routed order may go unacknowledged by its venue before the venue is asked
    #: for its status; also how long before it is asked again.
    reconcile_after_s: float = 5.0
    #: Seconds between reconciliation passes.
    reconcile_interval_s: float = 1.0
    #: How far back, in seconds, reconciliation looks for routed orders (a week).
    reconcile_lookback_s: float = 604_800.0
