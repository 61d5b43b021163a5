"""Typed, frozen service configuration with one explicit environment-variable layer.

Every service describes its settings as a frozen, keyword-only dataclass
whose defaults are documented in place. :func:`load` builds one from, in
increasing precedence, the defaults, ``BROKERMESH_<FIELD>`` and
``BROKERMESH_<SERVICE>_<FIELD>`` environment variables, and explicit
overrides, and refuses what it cannot use, naming the field:

* a variable under the service's own prefix that names none of its fields;
* a shared ``BROKERMESH_<NAME>`` that is neither a platform variable
  (:data:`PLATFORM_VARIABLES`), nor a setting of any service of the platform
  (:data:`KNOWN_SETTINGS`), nor ``<SERVICE>_<SETTING>`` meant for another
  service;
* a value that does not parse as, or an override that is not of, the
  field's declared type (tuple elements parse as the element type);
* a value out of range (:func:`validate`): ports outside 0..65535,
  negative or non-finite durations (fields ending in ``_s`` or ``_ms``), and
  anything below a field's ``metadata["min"]``.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import types
import typing
from collections.abc import Collection, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

from brokermesh.mesh.errors import ConfigError

PREFIX = "BROKERMESH_"

#: Variables the platform reads outside any settings class, without the prefix.
PLATFORM_VARIABLES: frozenset[str] = frozenset(
    {
        # Which service a shared entry point runs (the venue simulators).
        "SERVICE",
        # asyncio or uvloop, read by mesh.server before any settings exist.
        "EVENT_LOOP",
        # The migration job's owner DSN (k8s/base/postgres/migrate-job.yaml).
        "OWNER_DATABASE_URL",
        # Tool paths for the deployment checks that `make test` runs.
        "CHECKOV",
        "KUBECTL",
    }
)

#: Every field of every service's settings class. A shared ``BROKERMESH_<FIELD>``
#: set for some services is not an error in the others; tests/mesh/test_registry.py
#: keeps this in step with the settings classes.
KNOWN_SETTINGS: frozenset[str] = frozenset(
    {
        # ServiceSettings
        "host",
        "port",
        "reflection",
        "max_deadline_ms",
        "max_in_flight",
        "shutdown_grace_s",
        "metrics_port",
        "log_level",
        "data_dir",
        "nats_url",
        "database_url",
        "otlp_endpoint",
        "upstreams",
        # control-plane
        "trust_forwarded_client_cert",
        "write_attempts",
        "audit_attempts",
        "default_history_limit",
        "nats_timeout_s",
        "nats_start_timeout_s",
        # control-plane and ledger
        "jetstream_assets",
        # gateway
        "http_host",
        "http_port",
        "jwt_public_key_path",
        "jwt_issuer",
        "jwt_audience",
        "entitlements_refresh_s",
        # ledger
        "checkpoint_interval_ms",
        "checkpoint_key_path",
        "relay_database_url",
        "relay_batch_size",
        "relay_poll_interval_ms",
        "publish_timeout_ms",
        "query_pool_size",
        # oms and risk
        "refresh_interval_s",
        "startup_timeout_s",
        "database_timeout_s",
        "market_markup_bps",
        "orders_stream",
        "orders_subject",
        "quotes_subject",
        "replay_margin_s",
        "nats_retry_s",
        "finished_retention_s",
        "hold_ttl_s",
        "feed_check_interval_s",
        # order-entry
        "db_pool_size",
        "recent_requests",
        # router
        "fee_schedule",
        "default_fee_per_share",
        "venue_poll_interval_s",
        "venue_poll_timeout_s",
        "venue_status_max_age_s",
        "quote_max_age_s",
        # venue-gateway
        "venue_fix_ports",
        "sender_comp_id",
        "heartbeat_s",
        "reconnect_interval_s",
        "logon_timeout_s",
        # venue simulators
        "fix_port",
        "seed",
        "quote_interval_s",
    }
)

S = TypeVar("S")

_PORT_RANGE = (0, 65_535)


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ServiceSettings:
    """Settings every service shares; services extend this with their own fields."""

    #: Interface the gRPC server binds to.
    host: str = "127.0.0.1"
    #: gRPC port; 0 picks a free one (tests).
    port: int = 0
    #: Serve gRPC reflection. Off by default: it exposes the whole contract.
    reflection: bool = False
    #: Longest deadline a caller may give this service; longer ones are cut to it.
    max_deadline_ms: int = dataclasses.field(default=2_000, metadata={"min": 1})
    #: Calls (health checks aside) the server works on at once; more are refused at once
    #: with RESOURCE_EXHAUSTED rather than queued behind the others past their deadlines.
    #: 0 sets no limit.
    max_in_flight: int = dataclasses.field(default=64, metadata={"min": 0})
    #: Seconds in-flight calls get to finish on shutdown before they are cancelled.
    shutdown_grace_s: float = 5.0
    #: Port for Prometheus metrics over HTTP; 0 disables the endpoint.
    metrics_port: int = 0
    #: Log level name.
    log_level: str = "INFO"
    #: Where the service keeps local state (FIX stores, span files, caches).
    data_dir: Path = Path(".brokermesh")
    #: NATS server URL.
    nats_url: str = "nats://127.0.0.1:4222"
    #: PostgreSQL DSN for the application role.
    database_url: str = "postgresql://brokermesh_app@127.0.0.1:5432/brokermesh"
    #: OTLP gRPC endpoint for spans; empty keeps spans in local files.
    otlp_endpoint: str = ""
    #: Addresses of the services this one calls, "name=host:port,name=host:port".
    upstreams: str = ""

    def __post_init__(self) -> None:
        validate(self)


def load(
    cls: type[S],
    service: str,
    *,
    environ: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
    **overrides: Any,
) -> S:
    """Build ``cls`` for ``service`` from defaults, the environment and ``overrides``.

    ``defaults`` replaces the class's own defaults for this service (such as
    its port from the manifest) and sits below the environment. Raises
    :class:`ConfigError` naming the variable or field that cannot be used.
    """
    env = os.environ if environ is None else environ
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    service_prefix = f"{PREFIX}{_env_name(service)}_"

    _refuse_unknown_variables(env, service, service_prefix, fields)
    given = {**(defaults or {}), **overrides}
    bad = sorted(set(given) - set(fields))
    if bad:
        raise ConfigError(f"unknown setting(s) for {service}: {', '.join(bad)}", field=bad[0])
    for name, value in given.items():
        _check_type(name, value, hints[name])

    values: dict[str, Any] = dict(defaults or {})
    for name in fields:
        for key in (f"{PREFIX}{name.upper()}", f"{service_prefix}{name.upper()}"):
            if key in env:
                values[name] = _parse(name, env[key], hints[name])
    values.update(overrides)
    settings = cls(**values)
    # Again here: a subclass with a __post_init__ of its own does not run the base one.
    validate(settings)
    return settings


def validate(settings: object) -> None:
    """Check the ranges of ``settings``' fields; raise :class:`ConfigError` naming the first
    field out of range."""
    for field in dataclasses.fields(settings):  # type: ignore[arg-type]
        value = getattr(settings, field.name)
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            continue
        if field.name == "port" or field.name.endswith("_port"):
            low, high = _PORT_RANGE
            if not low <= value <= high:
                raise ConfigError(
                    f"setting {field.name}={value} is not a port ({low}..{high})",
                    field=field.name,
                )
        if field.name.endswith(("_s", "_ms")) and not (math.isfinite(value) and value >= 0):
            raise ConfigError(
                f"setting {field.name}={value} is not a duration (a finite number >= 0)",
                field=field.name,
            )
        minimum = field.metadata.get("min")
        if minimum is not None and value < minimum:
            raise ConfigError(
                f"setting {field.name}={value} is below its minimum {minimum}", field=field.name
            )


def parse_upstreams(text: str) -> dict[str, str]:
    """Parse ``"oms=127.0.0.1:50052,risk=127.0.0.1:50053"`` into a mapping."""
    upstreams: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, address = item.partition("=")
        if not sep or not name or not address:
            raise ConfigError(f"upstream {item!r} is not name=host:port", field="upstreams")
        upstreams[name] = address
    return upstreams


def _env_name(service: str) -> str:
    return service.upper().replace("-", "_")


def _refuse_unknown_variables(
    env: Mapping[str, str], service: str, service_prefix: str, fields: Collection[str]
) -> None:
    own = sorted(
        key
        for key in env
        if key.startswith(service_prefix) and key[len(service_prefix) :].lower() not in fields
    )
    if own:
        raise ConfigError(
            f"unknown setting(s) for {service}: {', '.join(own)}",
            field=own[0][len(service_prefix) :].lower(),
        )

    known = KNOWN_SETTINGS.union(fields)
    shared = sorted(
        key
        for key in env
        if key.startswith(PREFIX)
        and not key.startswith(service_prefix)
        and not _is_known(key[len(PREFIX) :], known)
    )
    if shared:
        raise ConfigError(
            f"unknown setting(s) {', '.join(shared)}: no service of the platform reads "
            f"{'them' if len(shared) > 1 else 'it'}",
            field=shared[0][len(PREFIX) :].lower(),
        )


def _is_known(name: str, known: Collection[str]) -> bool:
    """Whether ``name`` (without the prefix) is a platform variable, a setting, or
    ``<SERVICE>_<SETTING>`` for some service."""
    if name in PLATFORM_VARIABLES or name.lower() in known:
        return True
    at = name.find("_")
    while at > 0:
        if name[at + 1 :].lower() in known:
            return True
        at = name.find("_", at + 1)
    return False


def _parse(name: str, raw: str, hint: Any) -> Any:
    target = _unwrap_optional(hint)
    try:
        if typing.get_origin(target) is tuple:
            return tuple(
                _parse_scalar(part.strip(), element)
                for part, element in _tuple_elements(raw, target)
            )
        return _parse_scalar(raw, target)
    except (ValueError, InvalidOperation) as exc:
        raise ConfigError(
            f"setting {name}={raw!r} is not a valid {_type_name(target)}", field=name
        ) from exc
    except TypeError as exc:
        raise ConfigError(
            f"setting {name} has a type the environment cannot set", field=name
        ) from exc


def _parse_scalar(raw: str, target: Any) -> Any:
    if target is bool:
        return _parse_bool(raw)
    if target in (int, float, str, Path, Decimal):
        return target(raw)
    if isinstance(target, type) and issubclass(target, enum.Enum):
        return target(raw)
    raise TypeError(target)


def _tuple_elements(raw: str, target: Any) -> list[tuple[str, Any]]:
    parts = [part for part in raw.split(",") if part.strip()]
    args = typing.get_args(target)
    if len(args) == 2 and args[1] is Ellipsis:
        return [(part, args[0]) for part in parts]
    if len(args) != len(parts):
        raise ValueError(f"{len(parts)} values for a {len(args)}-tuple")
    return list(zip(parts, args, strict=True))


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def _check_type(name: str, value: Any, hint: Any) -> None:
    if not _is_instance(value, hint):
        raise ConfigError(
            f"setting {name}={value!r} is a {type(value).__name__}, not a {_type_name(hint)}",
            field=name,
        )


def _is_instance(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if isinstance(hint, types.UnionType) or origin is typing.Union:
        return any(_is_instance(value, arg) for arg in args)
    if hint is type(None) or hint is None:
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint in (int, Decimal):
        # An int is an exact Decimal; a float is not, and a bool is no number here.
        return isinstance(value, hint | int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_is_instance(item, args[0]) for item in value)
        return len(args) == len(value) and all(map(_is_instance, value, args))
    if origin is dict:
        key_type, value_type = args or (Any, Any)
        return isinstance(value, dict) and all(
            _is_instance(k, key_type) and _is_instance(v, value_type) for k, v in value.items()
        )
    return isinstance(value, origin or hint)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint)


def _unwrap_optional(hint: Any) -> Any:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint
