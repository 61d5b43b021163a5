"""Typed, frozen service configuration with one explicit environment-variable layer.

Every service describes its settings as a frozen, keyword-only dataclass
whose defaults are documented in place. :func:`load` builds one from, in
increasing precedence, the defaults, ``BROKERMESH_<FIELD>`` and
``BROKERMESH_<SERVICE>_<FIELD>`` environment variables, and explicit
overrides. Unknown variables under a service's prefix are refused, and a
value that cannot be parsed names its field.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

from brokermesh.mesh.errors import ConfigError

PREFIX = "BROKERMESH_"

S = TypeVar("S")


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
    max_deadline_ms: int = 2_000
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
    its port from the manifest) and sits below the environment.
    """
    env = os.environ if environ is None else environ
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    service_prefix = f"{PREFIX}{_env_name(service)}_"

    unknown = sorted(
        key
        for key in env
        if key.startswith(service_prefix) and key[len(service_prefix) :].lower() not in fields
    )
    if unknown:
        raise ConfigError(f"unknown setting(s) for {service}: {', '.join(unknown)}")
    bad = sorted((set(overrides) | set(defaults or ())) - set(fields))
    if bad:
        raise ConfigError(f"unknown setting(s) for {service}: {', '.join(bad)}", field=bad[0])

    values: dict[str, Any] = dict(defaults or {})
    for name in fields:
        for key in (f"{PREFIX}{name.upper()}", f"{service_prefix}{name.upper()}"):
            if key in env:
                values[name] = _parse(name, env[key], hints[name])
    values.update(overrides)
    return cls(**values)


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


def _parse(name: str, raw: str, hint: Any) -> Any:
    target = _unwrap_optional(hint)
    try:
        if target is bool:
            return _parse_bool(raw)
        if target in (int, float, str, Path):
            return target(raw)
        if target is Decimal:
            return Decimal(raw)
        if typing.get_origin(target) is tuple:
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except (ValueError, InvalidOperation) as exc:
        raise ConfigError(f"setting {name}={raw!r} is not a valid {target}", field=name) from exc
    raise ConfigError(f"setting {name} has a type the environment cannot set", field=name)


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def _unwrap_optional(hint: Any) -> Any:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint
