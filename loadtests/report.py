"""Write results as JSON and Markdown under ``loadtests/results/``."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtests.stats import Check, fmt_ms

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def timestamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; floats get three decimals."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "n/a" if math.isnan(value) else f"{value:.3f}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict_table(checks: Sequence[Check]) -> str:
    rows = [
        (
            c.segment,
            c.quantile,
            fmt_ms(c.measured_ms),
            f"{c.budget_ms:.0f}",
            "ok" if c.ok else "BREACH",
        )
        for c in checks
    ]
    return md_table(["segment", "quantile", "measured ms", "budget ms", "verdict"], rows)


def _json_default(value: Any) -> Any:
    return str(value)


def _clean(value: Any) -> Any:
    """NaN is not JSON: write null instead."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write(stem: str, data: dict[str, Any], markdown: str, *, latest: bool = False) -> Path:
    """Write ``<stem>.json`` and ``<stem>.md`` (and ``latest.md``); return the .md path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{stem}.json").write_text(
        json.dumps(_clean(data), indent=2, default=_json_default) + "\n"
    )
    md_path = RESULTS_DIR / f"{stem}.md"
    md_path.write_text(markdown)
    if latest:
        (RESULTS_DIR / "latest.md").write_text(markdown)
    return md_path
