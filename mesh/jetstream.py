"""The platform's JetStream assets as data, and an idempotent create-or-update of them.

``ORDERS`` carries order events and risk decisions, ``CONTROL_AUDIT`` the
control plane's audit trail, and the ``controls`` key-value bucket the live
trading controls (kill switches, limits) with their recent history. Both
streams keep history: deleting or purging messages is refused by the server.
:func:`ensure_jetstream` makes a server match these definitions; running it
again changes nothing.
"""

from __future__ import annotations

import logging
from typing import Final

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BucketNotFoundError, NotFoundError

_LOGGER = logging.getLogger(__name__)

_DAY_S: Final = 24 * 60 * 60

ORDERS_STREAM: Final = "ORDERS"
CONTROL_AUDIT_STREAM: Final = "CONTROL_AUDIT"
CONTROLS_BUCKET: Final = "controls"

#: Order events and risk decisions; publishers set Nats-Msg-Id so a retry within the
#: duplicate window is stored once.
ORDERS: Final = StreamConfig(
    name=ORDERS_STREAM,
    description="Order events and pre-trade risk decisions",
    subjects=["trading.orders.>", "risk.decisions.>"],
    retention=RetentionPolicy.LIMITS,
    storage=StorageType.FILE,
    duplicate_window=10 * 60,
    max_age=30 * _DAY_S,
    deny_delete=True,
    deny_purge=True,
)

#: Every control-plane change, kept without an age limit.
CONTROL_AUDIT: Final = StreamConfig(
    name=CONTROL_AUDIT_STREAM,
    description="Audit trail of control-plane changes",
    subjects=["control.audit.>"],
    retention=RetentionPolicy.LIMITS,
    storage=StorageType.FILE,
    # The server's default window, stated so that comparisons see no drift.
    duplicate_window=2 * 60,
    max_age=0,
    deny_delete=True,
    deny_purge=True,
)

#: Live trading controls; 64 is the most history JetStream keeps per key.
CONTROLS: Final = KeyValueConfig(
    bucket=CONTROLS_BUCKET,
    description="Live trading controls",
    history=64,
    storage=StorageType.FILE,
)

STREAMS: Final = (ORDERS, CONTROL_AUDIT)
BUCKETS: Final = (CONTROLS,)

#: The stream settings :func:`ensure_jetstream` owns; others keep the server's values.
_STREAM_FIELDS: Final = (
    "description",
    "retention",
    "storage",
    "duplicate_window",
    "max_age",
    "deny_delete",
    "deny_purge",
)


async def ensure_jetstream(js: JetStreamContext) -> dict[str, str]:
    """Create or update every stream and bucket; returns each asset's outcome
    ("created", "updated" or "unchanged") by stream name."""
    outcomes: dict[str, str] = {}
    for stream in STREAMS:
        assert stream.name is not None
        outcomes[stream.name] = await _ensure_stream(js, stream)
    for bucket in BUCKETS:
        outcomes[f"KV_{bucket.bucket}"] = await _ensure_bucket(js, bucket)
    return outcomes


async def _ensure_stream(js: JetStreamContext, desired: StreamConfig) -> str:
    assert desired.name is not None
    try:
        current = (await js.stream_info(desired.name)).config
    except NotFoundError:
        await js.add_stream(desired.evolve())
        _LOGGER.info("created stream %s", desired.name)
        return "created"

    if _stream_matches(current, desired):
        return "unchanged"
    # The definition here is the source of truth, so the update sends it whole.
    await js.update_stream(desired.evolve())
    _LOGGER.info("updated stream %s", desired.name)
    return "updated"


def _stream_matches(current: StreamConfig, desired: StreamConfig) -> bool:
    if sorted(current.subjects or []) != sorted(desired.subjects or []):
        return False
    return all(getattr(current, name) == getattr(desired, name) for name in _STREAM_FIELDS)


async def _ensure_bucket(js: JetStreamContext, desired: KeyValueConfig) -> str:
    stream_name = f"KV_{desired.bucket}"
    try:
        await js.key_value(desired.bucket)
    except BucketNotFoundError:
        await js.create_key_value(desired.evolve())
        _LOGGER.info("created key-value bucket %s", desired.bucket)
        return "created"

    # A bucket is a stream with KV-specific settings; only history and the description
    # are ours to change, and the rest of the stream's configuration is kept.
    current = (await js.stream_info(stream_name)).config
    if current.storage != desired.storage:
        raise ValueError(
            f"bucket {desired.bucket} uses {current.storage} storage, not "
            f"{desired.storage}; a bucket's storage cannot change in place"
        )
    if (
        current.max_msgs_per_subject == desired.history
        and current.description == desired.description
    ):
        return "unchanged"
    await js.update_stream(
        current.evolve(max_msgs_per_subject=desired.history, description=desired.description)
    )
    _LOGGER.info("updated key-value bucket %s", desired.bucket)
    return "updated"
