"""Reference data shipped with the platform: the tradable securities and their reference prices."""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources


@dataclass(frozen=True, slots=True, kw_only=True)
class Security:
    """A listed security with the price the platform's market model starts from."""

    symbol: str
    name: str
    reference_price: Decimal
    average_daily_volume: int
    eligible: bool


@functools.cache
def load_securities() -> tuple[Security, ...]:
    """Return the securities in ``brokermesh/data/securities.csv``, in file order."""
    text = resources.files("brokermesh.data").joinpath("securities.csv").read_text()
    return tuple(
        Security(
            symbol=row["symbol"],
            name=row["name"],
            reference_price=Decimal(row["reference_price"]),
            average_daily_volume=int(row["average_daily_volume"]),
            eligible=row["eligible"] == "true",
        )
        for row in csv.DictReader(text.splitlines())
    )
