"""The control-plane service: operators change trading controls; every change is audited.

The current controls are one serialized :class:`TradingControls` under key
``trading`` in the ``controls`` key-value bucket, which data-plane services
watch (:mod:`brokermesh.mesh.controls`). A change is audited before it is
made:

1. read the current value and the key's revision;
2. append the change to the ``CONTROL_AUDIT`` stream as INTENDED and wait for
   the acknowledgement (``Nats-Msg-Id`` = change id, so a retried publish is
   stored once); if that fails, nothing is written;
3. write the new value with compare-and-set on the revision read in 1; the
   value names the change id, so a stored value always leads to its record;
4. append the outcome: APPLIED with the new revision, or NOT_APPLIED when
   another writer got there first (the change is then retried as a new one).

A crash between 2 and 4 leaves an INTENDED record, never an unaudited value.
The stream denies delete and purge, so the audit trail only grows.

The actor is the operator the request names. Where an Istio sidecar fronts the
service (``trust_forwarded_client_cert``), the caller's mTLS identity is
recorded beside it; locally nothing authenticates callers and the operator
name is self-declared.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import grpc
import nats.errors
import nats.js.errors
from google.protobuf.json_format import MessageToJson
from google.protobuf.message import DecodeError
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from brokermesh.common.v1 import common_pb2
from brokermesh.control.v1 import control_pb2, control_pb2_grpc
from brokermesh.mesh import controls as mesh_controls
from brokermesh.mesh.config import ServiceSettings
from brokermesh.mesh.errors import Aborted, PermissionDenied, Unavailable
from brokermesh.mesh.jetstream import ensure_jetstream
from brokermesh.services.control_plane.identity import XFCC_HEADER, spiffe_id

_LOGGER = logging.getLogger(__name__)

#: Header JetStream de-duplicates on, so a retried audit publish is stored once.
MSG_ID_HEADER = "Nats-Msg-Id"
#: Suffix of the message id of a change's outcome record (its intent record has the bare id).
OUTCOME_MSG_ID_SUFFIX = ".outcome"
#: Audit records fetched from the stream concurrently when listing history.
_HISTORY_BATCH = 64
#: Reads of the controls key's history before a read that needs it gives up.
_HISTORY_ATTEMPTS = 5

T = TypeVar("T")
Mutation = Callable[[control_pb2.TradingControls], None]


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ControlPlaneSettings(ServiceSettings):
    """Settings of the control-plane service."""

    #: "manage" creates and updates the JetStream assets; "verify" only checks them (an
    #: operator owns them, as nack does in Kubernetes).
    jetstream_assets: str = "manage"
    #: Compare-and-set attempts on the controls key before a change is refused as ABORTED.
    write_attempts: int = 5
    #: Attempts at publishing one audit record; retries are de-duplicated by change id.
    audit_attempts: int = 3
    #: Audit records ListControlChanges returns when the request sets no limit.
    default_history_limit: int = 50
    #: Seconds to wait for a JetStream acknowledgement.
    nats_timeout_s: float = 1.5
    #: Seconds start-up waits for NATS and JetStream before the process gives up.
    nats_start_timeout_s: float = 30.0
    #: Record the caller's mTLS identity from the ``x-forwarded-client-cert`` header. Set it
    #: only where a sidecar writes that header on every inbound call (Istio, in Kubernetes);
    #: elsewhere any caller could write it, so it is ignored.
    trust_forwarded_client_cert: bool = False


class ControlsStore:
    """Reads and changes the controls in the key-value bucket and writes the audit trail."""

    def __init__(
        self,
        js: JetStreamContext,
        kv: KeyValue,
        settings: ControlPlaneSettings,
        *,
        audit_stream: str = mesh_controls.AUDIT_STREAM,
    ) -> None:
        self._js = js
        self._kv = kv
        self._settings = settings
        self._audit_stream = audit_stream

    async def read(self) -> tuple[control_pb2.TradingControls, int]:
        """The controls in force and the key's latest revision (which the next write must name).

        The controls in force are the newest valid value: a corrupt or deleted
        latest entry is skipped, exactly as data-plane watchers skip it.
        """
        try:
            entry = await self._kv.get(mesh_controls.KEY)
        except nats.js.errors.KeyNotFoundError as exc:
            # Never written: defaults. Deleted: the tombstone's revision guards the next write.
            if exc.entry is None:
                return mesh_controls.default_controls(), 0
            _LOGGER.warning(
                "controls key was deleted at revision %d; using the newest valid value before it",
                exc.entry.revision,
            )
            deleted_at = int(exc.entry.revision)
            return await self._newest_valid(deleted_at), deleted_at
        revision = int(entry.revision or 0)
        try:
            return mesh_controls.decode_controls(entry.value or b"", revision), revision
        except mesh_controls.InvalidControls as exc:
            _LOGGER.warning(
                "controls at revision %d are invalid (%s); using the newest valid value before it",
                revision,
                exc,
            )
            return await self._newest_valid(revision), revision

    async def _newest_valid(self, latest_revision: int) -> control_pb2.TradingControls:
        """Walk the key's history (the bucket keeps 64 revisions) back to a usable value.

        nats-py can end a history early, or return none, when the entries reach its
        watcher before its own consumer-info check; taking such a history for the whole
        one would turn a halt into the defaults. A history counts only once it reaches
        ``latest_revision``, the revision just read.
        """
        for _ in range(_HISTORY_ATTEMPTS):
            try:
                entries = await self._kv.history(mesh_controls.KEY)
            except nats.js.errors.NoKeysError:
                entries = []
            if entries and int(entries[-1].revision or 0) >= latest_revision:
                break
            _LOGGER.info(
                "history of the controls key ended before revision %d; reading it again",
                latest_revision,
            )
        else:
            raise Unavailable(
                f"the history of the controls key did not reach revision {latest_revision} "
                f"in {_HISTORY_ATTEMPTS} reads; try again"
            )
        for entry in reversed(entries):
            if entry.operation in (KV_DEL, KV_PURGE):
                continue
            try:
                return mesh_controls.decode_controls(entry.value or b"", int(entry.revision or 0))
            except mesh_controls.InvalidControls:
                continue
        return mesh_controls.default_controls()

    async def change(
        self,
        actor: common_pb2.Actor,
        reason: str,
        mutate: Mutation,
        *,
        authenticated_caller: str = "",
    ) -> control_pb2.TradingControls:
        """Apply ``mutate`` to the current controls, auditing the change before storing it.

        Not idempotent: each call is a change of its own, with its own records.
        Once its intent is recorded, a change runs to its outcome even if the
        caller stops waiting.
        """
        for attempt in range(1, self._settings.write_attempts + 1):
            before, last_revision = await self.read()
            change = _intended_change(before, actor, reason, mutate, authenticated_caller)
            after = await _finish_despite_cancellation(self._make(change, last_revision))
            if after is not None:
                return after
            _LOGGER.info(
                "controls changed concurrently (attempt %d of %d); retrying",
                attempt,
                self._settings.write_attempts,
            )
        raise Aborted(
            f"controls changed concurrently {self._settings.write_attempts} times; "
            "read them again and retry"
        )

    async def _make(
        self, change: control_pb2.ControlChange, last_revision: int
    ) -> control_pb2.TradingControls | None:
        """Record ``change``, write it over ``last_revision``, record the outcome.

        Returns the stored value, or None when another writer changed the key first.
        """
        await self._record_intent(change)
        try:
            revision = await self._kv.update(
                mesh_controls.KEY, change.after.SerializeToString(), last=last_revision
            )
        except nats.js.errors.KeyWrongLastSequenceError:
            await self._record_outcome(
                change,
                control_pb2.CHANGE_OUTCOME_NOT_APPLIED,
                f"the controls changed after revision {last_revision} was read",
            )
            return None
        except nats.errors.Error:
            # Whether the write landed is unknown: the value names the change if it did.
            _LOGGER.error(
                "writing controls change %s failed; it is recorded as intended",
                change.change_id,
            )
            raise
        change.after.revision = revision
        await self._record_outcome(change, control_pb2.CHANGE_OUTCOME_APPLIED)
        return change.after

    async def _record_intent(self, change: control_pb2.ControlChange) -> None:
        """Store the INTENDED record; raise Unavailable (nothing is written) if it cannot be."""
        error = await self._publish(change, change.change_id)
        if error is not None:
            raise Unavailable(
                f"the audit record of controls change {change.change_id} could not be stored "
                f"({error or type(error).__name__}); the controls were not changed"
            )

    async def _record_outcome(
        self,
        change: control_pb2.ControlChange,
        outcome: control_pb2.ChangeOutcome,
        detail: str = "",
    ) -> None:
        """Store the outcome record. Its loss is logged, not raised: the intent is on record
        and the stored value names the change that wrote it."""
        change.outcome = outcome
        change.outcome_detail = detail
        error = await self._publish(change, change.change_id + OUTCOME_MSG_ID_SUFFIX)
        if error is not None:
            _LOGGER.error(
                "outcome record not stored: %s (%s)", MessageToJson(change, indent=None), error
            )
            return
        if outcome != control_pb2.CHANGE_OUTCOME_APPLIED:
            return
        _LOGGER.info(
            "controls changed to halted=%s mode=%s at revision %d by %s%s: %s",
            change.after.trading_halted,
            mesh_controls.mode_name(change.after.mode),
            change.after.revision,
            change.actor.id,
            f" ({change.authenticated_caller})" if change.authenticated_caller else "",
            change.reason,
            extra={"change_id": change.change_id},
        )

    async def _publish(self, change: control_pb2.ControlChange, msg_id: str) -> Exception | None:
        """Append one record and wait for the ack; None once stored, else the last error.

        Retries carry the same message id, so the stream keeps one copy.
        """
        subject = f"{mesh_controls.AUDIT_SUBJECT_PREFIX}{change.change_id}"
        data = change.SerializeToString()
        error: Exception | None = None
        for _ in range(self._settings.audit_attempts):
            try:
                await self._js.publish(
                    subject,
                    data,
                    stream=self._audit_stream,
                    headers={MSG_ID_HEADER: msg_id},
                    timeout=self._settings.nats_timeout_s,
                )
            except nats.errors.Error as exc:
                error = exc
                continue
            return None
        return error

    async def history(self, limit: int) -> list[control_pb2.ControlChange]:
        """The newest ``limit`` changes, newest first, each as its latest record: the
        outcome once there is one, the intent before."""
        info = await self._js.stream_info(self._audit_stream)
        first = max(int(info.state.first_seq or 1), 1)
        seq = int(info.state.last_seq or 0)
        # Walking backwards, the first record met of a change is its latest.
        latest: dict[str, control_pb2.ControlChange] = {}
        while seq >= first and len(latest) < limit:
            batch = range(seq, max(first, seq - _HISTORY_BATCH + 1) - 1, -1)
            found = await asyncio.gather(*(self._audit_record(s) for s in batch))
            for change in found:
                if change is not None:
                    latest.setdefault(change.change_id, change)
            seq = batch.stop
        return list(latest.values())[:limit]

    async def _audit_record(self, seq: int) -> control_pb2.ControlChange | None:
        try:
            msg = await self._js.get_msg(self._audit_stream, seq=seq)
        except nats.js.errors.NotFoundError:
            return None  # Aged out between stream_info and this read.
        change = control_pb2.ControlChange()
        try:
            change.ParseFromString(msg.data or b"")
        except DecodeError:
            _LOGGER.warning("audit record at sequence %d is not a ControlChange; skipped", seq)
            return None
        return change


def _intended_change(
    before: control_pb2.TradingControls,
    actor: common_pb2.Actor,
    reason: str,
    mutate: Mutation,
    authenticated_caller: str,
) -> control_pb2.ControlChange:
    """The INTENDED record: ``before`` changed by ``mutate``, stamped with who, why and when."""
    change_id = str(uuid.uuid4())
    after = control_pb2.TradingControls()
    after.CopyFrom(before)
    mutate(after)
    after.reason = reason
    after.updated_by.CopyFrom(actor)
    after.updated_at.GetCurrentTime()
    after.change_id = change_id
    # A writer cannot know the revision its write will get; readers set it.
    after.revision = 0
    return control_pb2.ControlChange(
        change_id=change_id,
        before=before,
        after=after,
        actor=actor,
        reason=reason,
        changed_at=after.updated_at,
        outcome=control_pb2.CHANGE_OUTCOME_INTENDED,
        authenticated_caller=authenticated_caller,
    )


async def _finish_despite_cancellation(call: Coroutine[Any, Any, T]) -> T:
    """Await ``call`` in a task of its own that a cancelled caller does not cancel.

    A change whose intent is recorded must reach its outcome record even when
    the caller's deadline runs out; what it ends with is then only logged.
    """
    task = asyncio.ensure_future(call)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_log_abandoned)
        raise


def _log_abandoned(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _LOGGER.error(
            "controls change failed after its caller stopped waiting: %s", task.exception()
        )


def _require_operator(actor: common_pb2.Actor) -> common_pb2.Actor:
    """Only a named operator may change controls; advisors and systems are refused."""
    if actor.type != common_pb2.ACTOR_TYPE_OPERATOR or not actor.id.strip():
        raise PermissionDenied(
            "only an operator with an id may change trading controls", field="actor"
        )
    return actor


class ControlPlaneServicer(control_pb2_grpc.ControlPlaneServiceServicer):
    """gRPC face of :class:`ControlsStore`; the pipeline has validated each request."""

    def __init__(self, app: ControlPlaneApp) -> None:
        self._app = app

    def _caller(self, context: grpc.aio.ServicerContext) -> str:
        """The caller's SPIFFE id when a trusted sidecar forwarded its certificate, else ""."""
        if not self._app.settings.trust_forwarded_client_cert:
            return ""
        values = [
            value
            for key, value in context.invocation_metadata() or ()
            if key == XFCC_HEADER and isinstance(value, str)
        ]
        return spiffe_id(values[-1]) if values else ""

    async def GetTradingControls(
        self,
        request: control_pb2.GetTradingControlsRequest,
        context: grpc.aio.ServicerContext,
    ) -> control_pb2.GetTradingControlsResponse:
        controls, _ = await _unavailable_on_nats(self._app.store.read())
        return control_pb2.GetTradingControlsResponse(controls=controls)

    async def SetKillSwitch(
        self,
        request: control_pb2.SetKillSwitchRequest,
        context: grpc.aio.ServicerContext,
    ) -> control_pb2.SetKillSwitchResponse:
        actor = _require_operator(request.actor)

        def mutate(controls: control_pb2.TradingControls) -> None:
            controls.trading_halted = request.trading_halted

        after = await _unavailable_on_nats(
            self._app.store.change(
                actor, request.reason, mutate, authenticated_caller=self._caller(context)
            )
        )
        return control_pb2.SetKillSwitchResponse(controls=after)

    async def SetDegradationMode(
        self,
        request: control_pb2.SetDegradationModeRequest,
        context: grpc.aio.ServicerContext,
    ) -> control_pb2.SetDegradationModeResponse:
        actor = _require_operator(request.actor)

        def mutate(controls: control_pb2.TradingControls) -> None:
            controls.mode = request.mode

        after = await _unavailable_on_nats(
            self._app.store.change(
                actor, request.reason, mutate, authenticated_caller=self._caller(context)
            )
        )
        return control_pb2.SetDegradationModeResponse(controls=after)

    async def ListControlChanges(
        self,
        request: control_pb2.ListControlChangesRequest,
        context: grpc.aio.ServicerContext,
    ) -> control_pb2.ListControlChangesResponse:
        limit = request.limit or self._app.settings.default_history_limit
        changes = await _unavailable_on_nats(self._app.store.history(limit))
        return control_pb2.ListControlChangesResponse(changes=changes)


async def _unavailable_on_nats(call: Awaitable[T]) -> T:
    """Run ``call``, turning NATS failures into UNAVAILABLE.

    nats' own TimeoutError is a builtin TimeoutError, which the pipeline would
    report as DEADLINE_EXCEEDED; the caller's deadline was not the problem.
    """
    try:
        return await call
    except nats.errors.Error as exc:
        raise Unavailable(f"NATS: {exc or type(exc).__name__}") from exc


class ControlPlaneApp:
    """The service's :class:`~brokermesh.mesh.server.App`: one NATS connection, one store."""

    def __init__(self, settings: ControlPlaneSettings) -> None:
        self.settings = settings
        self._nc = NatsClient()
        self._store: ControlsStore | None = None

    @property
    def store(self) -> ControlsStore:
        if self._store is None:
            raise Unavailable("control plane is not connected to NATS yet")
        return self._store

    async def start(self) -> None:
        """Connect to NATS and make sure the bucket and the audit stream exist.

        Gives up after ``nats_start_timeout_s``: a process that exits is restarted
        and seen to be failing, where one waiting forever would look merely slow.
        """
        try:
            async with asyncio.timeout(self.settings.nats_start_timeout_s):
                await mesh_controls.connect(self._nc, self.settings.nats_url, name="control-plane")
                # Creating streams may take longer than a request's budget.
                await ensure_jetstream(self._nc.jetstream(), self.settings.jetstream_assets)
                js = self._nc.jetstream(timeout=self.settings.nats_timeout_s)
                kv = await js.key_value(mesh_controls.BUCKET)
        except TimeoutError as exc:
            await self._nc.close()
            raise Unavailable(
                f"NATS at {self.settings.nats_url} not ready within "
                f"{self.settings.nats_start_timeout_s}s"
            ) from exc
        self._store = ControlsStore(js, kv, self.settings)
        _LOGGER.info("control plane connected to NATS at %s", self.settings.nats_url)

    def register(self, server: grpc.aio.Server) -> None:
        control_pb2_grpc.add_ControlPlaneServiceServicer_to_server(
            ControlPlaneServicer(self), server
        )

    async def stop(self) -> None:
        self._store = None
        if self._nc.is_connected:
            await self._nc.drain()
        else:
            await self._nc.close()


def build(settings: ControlPlaneSettings) -> ControlPlaneApp:
    """The app :func:`brokermesh.mesh.server.run` serves."""
    return ControlPlaneApp(settings)
