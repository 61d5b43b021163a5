"""The platform's JetStream assets as data, and an idempotent create-or-update or check of them.

``ORDERS`` carries order events and risk decisions, ``CONTROL_AUDIT`` the
control plane's audit trail, ``AUDIT_CHECKPOINTS`` the ledger's signed
checkpoints of the event store, and the ``controls`` key-value bucket the live
trading controls (kill switches, limits) with their recent history. The three
streams are audit records: they keep every message without an age limit (a
broker-dealer keeps its books for years), and deleting or purging messages is
refused by the server. :func:`ensure_jetstream` makes a server match these
definitions; running it again changes nothing. Where an operator (the NATS
controller in Kubernetes) owns the assets, it only checks them instead.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Final

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BucketNotFoundError, NotFoundError

_LOGGER = logging.getLogger(__name__)

ORDERS_STREAM: Final = "ORDERS"
CONTROL_AUDIT_STREAM: Final = "CONTROL_AUDIT"
AUDIT_CHECKPOINTS_STREAM: Final = "AUDIT_CHECKPOINTS"
CONTROLS_BUCKET: Final = "controls"
#: The one subject the ledger publishes its checkpoints on.
CHECKPOINT_SUBJECT: Final = "audit.checkpoints"

#: Order events and risk decisions; publishers set Nats-Msg-Id so a retry within the
#: duplicate window is stored once. Each message is the copy ``audit verify`` holds its
#: event against, so none may age out: the stream grows with the order flow, and moving
#: old messages to cheaper storage is the job of a sourced archive stream, not of max_age
#: (docs/events.md).
ORDERS: Final = StreamConfig(
    name=ORDERS_STREAM,
    description="Order events and pre-trade risk decisions",
    subjects=["trading.orders.>", "risk.decisions.>"],
    retention=RetentionPolicy.LIMITS,
    storage=StorageType.FILE,
    duplicate_window=10 * 60,
    max_age=0,
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

#: The ledger's signed checkpoints of every order stream's head, a chain of their own.
AUDIT_CHECKPOINTS: Final = StreamConfig(
    name=AUDIT_CHECKPOINTS_STREAM,
    description="Signed checkpoints of the order event store",
    subjects=[CHECKPOINT_SUBJECT],
    retention=RetentionPolicy.LIMITS,
    storage=StorageType.FILE,
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

STREAMS: Final = (ORDERS, CONTROL_AUDIT, AUDIT_CHECKPOINTS)
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


class AssetMode(StrEnum):
    """Who owns the JetStream assets, and so what :func:`ensure_jetstream` may do to them."""

    #: The services do: create what is missing, update what drifted (the local platform).
    MANAGE = "manage"
    #: An operator does (nack in Kubernetes): check, never create or update.
    VERIFY = "verify"


class AssetMismatch(Exception):
    """An asset is missing or differs from its definition, and the services may not fix it."""


def asset_mode(value: str) -> AssetMode:
    """The :class:`AssetMode` named ``value``; a ValueError naming the choices otherwise."""
    try:
        return AssetMode(value)
    except ValueError:
        choices = ", ".join(mode.value for mode in AssetMode)
        raise ValueError(f"jetstream_assets={value!r} is not one of: {choices}") from None


async def ensure_jetstream(
    js: JetStreamContext, mode: AssetMode | str = AssetMode.MANAGE
) -> dict[str, str]:
    """Make the server's streams and buckets match their definitions; returns each asset's
    outcome ("created", "updated", "unchanged" or, in ``verify`` mode, "verified") by name.

    In ``verify`` mode nothing is written: a missing or differing asset raises
    :class:`AssetMismatch` naming it and the settings that differ.
    """
    checked = asset_mode(mode)
    outcomes: dict[str, str] = {}
    for stream in STREAMS:
        assert stream.name is not None
        outcomes[stream.name] = await _ensure_stream(js, stream, checked)
    for bucket in BUCKETS:
        outcomes[f"KV_{bucket.bucket}"] = await _ensure_bucket(js, bucket, checked)
    return outcomes


async def _ensure_stream(js: JetStreamContext, desired: StreamConfig, mode: AssetMode) -> str:
    assert desired.name is not None
    try:
        current = (await js.stream_info(desired.name)).config
    except NotFoundError:
        if mode is AssetMode.VERIFY:
            raise AssetMismatch(f"stream {desired.name} does not exist") from None
        await js.add_stream(desired.evolve())
        _LOGGER.info("created stream %s", desired.name)
        return "created"

    drift = _stream_drift(current, desired)
    if not drift:
        return "verified" if mode is AssetMode.VERIFY else "unchanged"
    if mode is AssetMode.VERIFY:
        raise AssetMismatch(f"stream {desired.name} differs from its definition in {drift}")
    # The definition here is the source of truth, so the update sends it whole, with the
    # replica count the stream has: left out, the server would reduce it to one.
    await js.update_stream(desired.evolve(num_replicas=current.num_replicas))
    _LOGGER.info("updated stream %s (%s)", desired.name, drift)
    return "updated"


def _stream_drift(current: StreamConfig, desired: StreamConfig) -> str:
    """The settings where ``current`` differs from ``desired``, as ``name server -> wanted``."""
    differences = [
        f"{name} {getattr(current, name)!r} -> {getattr(desired, name)!r}"
        for name in _STREAM_FIELDS
        if getattr(current, name) != getattr(desired, name)
    ]
    if sorted(current.subjects or []) != sorted(desired.subjects or []):
        differences.insert(0, f"subjects {current.subjects!r} -> {desired.subjects!r}")
    return ", ".join(differences)


async def _ensure_bucket(js: JetStreamContext, desired: KeyValueConfig, mode: AssetMode) -> str:
    stream_name = f"KV_{desired.bucket}"
    try:
        await js.key_value(desired.bucket)
    except BucketNotFoundError:
        if mode is AssetMode.VERIFY:
            raise AssetMismatch(f"key-value bucket {desired.bucket} does not exist") from None
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
        return "verified" if mode is AssetMode.VERIFY else "unchanged"
    if mode is AssetMode.VERIFY:
        raise AssetMismatch(
            f"key-value bucket {desired.bucket} differs from its definition in history "
            f"{current.max_msgs_per_subject} -> {desired.history} or description "
            f"{current.description!r} -> {desired.description!r}"
        )
    await js.update_stream(
        current.evolve(max_msgs_per_subject=desired.history, description=desired.description)
    )
    _LOGGER.info("updated key-value bucket %s", desired.bucket)
    return "updated"
