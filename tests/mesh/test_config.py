"""Service settings: a frozen keyword-only object, and the layers ``load`` builds it from."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path

import pytest

from brokermesh.mesh.config import ServiceSettings, load, parse_upstreams
from brokermesh.mesh.errors import ConfigError


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class OmsSettings(ServiceSettings):
    """A service's own settings, one field per type the environment can set."""

    max_notional: Decimal = Decimal("1000000")
    venues: tuple[str, ...] = ("SIMX",)
    retry_after_s: float | None = None
    limits: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class TypedTuples(ServiceSettings):
    """Tuples whose elements are not strings."""

    retry_delays_ms: tuple[int, ...] = ()
    weights: tuple[Decimal, ...] = ()
    window: tuple[str, float] = ("day", 1.0)


def test_settings_are_frozen() -> None:
    settings = ServiceSettings()

    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]


def test_settings_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        ServiceSettings("0.0.0.0")  # type: ignore[call-arg]


def test_settings_refuse_an_unknown_field() -> None:
    with pytest.raises(TypeError, match="prot"):
        ServiceSettings(prot=50051)  # type: ignore[call-arg]


def test_load_without_environment_gives_the_documented_defaults() -> None:
    settings = load(ServiceSettings, "oms", environ={})

    assert settings == ServiceSettings()
    assert (settings.reflection, settings.max_deadline_ms) == (False, 2_000)


def test_layers_apply_defaults_then_shared_then_service_variables_then_overrides() -> None:
    environ = {"BROKERMESH_PORT": "7000", "BROKERMESH_LOG_LEVEL": "DEBUG"}

    shared = load(ServiceSettings, "oms", environ=environ, defaults={"port": 6000})
    own = load(ServiceSettings, "oms", environ={**environ, "BROKERMESH_OMS_PORT": "8000"})
    overridden = load(
        ServiceSettings, "oms", environ={**environ, "BROKERMESH_OMS_PORT": "8000"}, port=9000
    )

    assert (shared.port, shared.log_level) == (7000, "DEBUG")
    assert own.port == 8000
    assert overridden.port == 9000


def test_a_service_variable_does_not_leak_into_another_service() -> None:
    settings = load(ServiceSettings, "risk", environ={"BROKERMESH_OMS_PORT": "8000"})

    assert settings.port == 0


def test_a_hyphenated_service_name_reads_underscored_variables() -> None:
    environ = {"BROKERMESH_VENUE_SIM_REFLECTION": "yes"}

    assert load(ServiceSettings, "venue-sim", environ=environ).reflection is True


def test_each_field_type_is_parsed_from_its_variable() -> None:
    environ = {
        "BROKERMESH_OMS_MAX_NOTIONAL": "250000.50",
        "BROKERMESH_OMS_VENUES": "SIMX, ALTX,,",
        "BROKERMESH_OMS_RETRY_AFTER_S": "0.25",
        "BROKERMESH_OMS_DATA_DIR": "/var/lib/oms",
        "BROKERMESH_OMS_SHUTDOWN_GRACE_S": "1.5",
    }

    settings = load(OmsSettings, "oms", environ=environ)

    assert settings.max_notional == Decimal("250000.50")
    assert settings.venues == ("SIMX", "ALTX")
    assert settings.retry_after_s == 0.25
    assert settings.data_dir == Path("/var/lib/oms")
    assert settings.shutdown_grace_s == 1.5


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("TRUE", True), (" on ", True), ("0", False), ("no", False), ("Off", False)],
)
def test_booleans_accept_the_usual_spellings(raw: str, expected: bool) -> None:
    environ = {"BROKERMESH_REFLECTION": raw}

    assert load(ServiceSettings, "oms", environ=environ).reflection is expected


@pytest.mark.parametrize(
    ("variable", "raw", "field"),
    [
        ("BROKERMESH_OMS_PORT", "fifty", "port"),
        ("BROKERMESH_REFLECTION", "maybe", "reflection"),
        ("BROKERMESH_OMS_MAX_NOTIONAL", "lots", "max_notional"),
        ("BROKERMESH_OMS_RETRY_AFTER_S", "soon", "retry_after_s"),
    ],
)
def test_a_value_that_does_not_parse_names_its_field(variable: str, raw: str, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(OmsSettings, "oms", environ={variable: raw})

    assert caught.value.field == field
    assert f"{field}={raw!r}" in caught.value.message


def test_a_field_the_environment_cannot_set_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="limits") as caught:
        load(OmsSettings, "oms", environ={"BROKERMESH_OMS_LIMITS": "a=1"})

    assert caught.value.field == "limits"


def test_an_unknown_variable_under_the_service_prefix_is_refused_by_name() -> None:
    environ = {"BROKERMESH_OMS_PROT": "50051", "BROKERMESH_OMS_PORT": "50051"}

    with pytest.raises(ConfigError, match="BROKERMESH_OMS_PROT") as caught:
        load(ServiceSettings, "oms", environ=environ)

    assert caught.value.field == "prot"


@pytest.mark.parametrize(
    ("variable", "field"),
    [
        ("BROKERMESH_LOG_LEVLE", "log_levle"),
        ("BROKERMESH_MAX_DEADLINE", "max_deadline"),
        ("BROKERMESH_RISK_MAX_DEADLINE", "risk_max_deadline"),
    ],
)
def test_an_unknown_shared_variable_is_refused_by_name(variable: str, field: str) -> None:
    environ = {"BROKERMESH_LOG_LEVEL": "DEBUG", variable: "1"}

    with pytest.raises(ConfigError, match=variable) as caught:
        load(ServiceSettings, "oms", environ=environ)

    assert caught.value.field == field


def test_platform_variables_and_settings_meant_for_other_services_are_accepted() -> None:
    environ = {
        "BROKERMESH_SERVICE": "venue-xnas",
        "BROKERMESH_EVENT_LOOP": "asyncio",
        "BROKERMESH_UPSTREAMS": "oms=127.0.0.1:50052",
        "BROKERMESH_VENUE_FIX_PORTS": "venue-xnas=127.0.0.1:9881",
        "BROKERMESH_VENUE_XNAS_FIX_PORT": "9881",
        "BROKERMESH_GATEWAY_HTTP_PORT": "8080",
        "BROKERMESH_QUOTES_SUBJECT": "marketdata.quotes.>",
    }

    settings = load(ServiceSettings, "oms", environ=environ)

    assert settings.upstreams == "oms=127.0.0.1:50052"


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"port": "50051"}, "port"),
        ({"reflection": 1}, "reflection"),
        ({"max_deadline_ms": True}, "max_deadline_ms"),
        ({"data_dir": "/var/lib/oms"}, "data_dir"),
        ({"max_notional": 0.1}, "max_notional"),
        ({"venues": ("SIMX", 7)}, "venues"),
        ({"venues": ["SIMX"]}, "venues"),
        ({"retry_after_s": "soon"}, "retry_after_s"),
        ({"limits": {"SIMX": "10"}}, "limits"),
    ],
)
def test_an_override_of_the_wrong_type_is_refused_by_name(
    override: dict[str, object], field: str
) -> None:
    with pytest.raises(ConfigError, match=field) as caught:
        load(OmsSettings, "oms", environ={}, **override)

    assert caught.value.field == field


def test_overrides_of_the_declared_types_are_accepted() -> None:
    settings = load(
        OmsSettings,
        "oms",
        environ={},
        port=50052,
        shutdown_grace_s=2,
        max_notional=Decimal("5"),
        venues=("SIMX",),
        retry_after_s=None,
        limits={"SIMX": 10},
    )

    assert (settings.port, settings.shutdown_grace_s, settings.retry_after_s) == (50052, 2, None)


def test_a_default_of_the_wrong_type_is_refused_by_name() -> None:
    with pytest.raises(ConfigError) as caught:
        load(ServiceSettings, "oms", environ={}, defaults={"port": "50052"})

    assert caught.value.field == "port"


@pytest.mark.parametrize(
    ("variable", "raw", "field"),
    [
        ("BROKERMESH_OMS_PORT", "-1", "port"),
        ("BROKERMESH_OMS_PORT", "65536", "port"),
        ("BROKERMESH_METRICS_PORT", "70000", "metrics_port"),
        ("BROKERMESH_MAX_DEADLINE_MS", "0", "max_deadline_ms"),
        ("BROKERMESH_OMS_SHUTDOWN_GRACE_S", "-0.5", "shutdown_grace_s"),
        ("BROKERMESH_OMS_RETRY_AFTER_S", "-1", "retry_after_s"),
        ("BROKERMESH_OMS_RETRY_AFTER_S", "nan", "retry_after_s"),
        ("BROKERMESH_OMS_SHUTDOWN_GRACE_S", "inf", "shutdown_grace_s"),
    ],
)
def test_a_value_out_of_range_is_refused_by_name(variable: str, raw: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field) as caught:
        load(OmsSettings, "oms", environ={variable: raw})

    assert caught.value.field == field


def test_the_edges_of_the_ranges_are_accepted() -> None:
    environ = {
        "BROKERMESH_OMS_PORT": "65535",
        "BROKERMESH_METRICS_PORT": "0",
        "BROKERMESH_MAX_DEADLINE_MS": "1",
        "BROKERMESH_SHUTDOWN_GRACE_S": "0",
    }

    settings = load(ServiceSettings, "oms", environ=environ)

    assert (settings.port, settings.max_deadline_ms, settings.shutdown_grace_s) == (65535, 1, 0)


def test_settings_built_directly_are_range_checked_too() -> None:
    with pytest.raises(ConfigError) as caught:
        ServiceSettings(max_deadline_ms=0)

    assert caught.value.field == "max_deadline_ms"


def test_tuple_elements_are_parsed_as_the_declared_element_type() -> None:
    environ = {
        "BROKERMESH_OMS_RETRY_DELAYS_MS": "10, 20,40,",
        "BROKERMESH_OMS_WEIGHTS": "0.25,0.75",
        "BROKERMESH_OMS_WINDOW": "week, 0.5",
    }

    settings = load(TypedTuples, "oms", environ=environ)

    assert settings.retry_delays_ms == (10, 20, 40)
    assert settings.weights == (Decimal("0.25"), Decimal("0.75"))
    assert settings.window == ("week", 0.5)


@pytest.mark.parametrize(
    ("variable", "raw", "field"),
    [
        ("BROKERMESH_OMS_RETRY_DELAYS_MS", "10,soon", "retry_delays_ms"),
        ("BROKERMESH_OMS_WEIGHTS", "0.25,lots", "weights"),
        ("BROKERMESH_OMS_WINDOW", "week", "window"),
    ],
)
def test_a_tuple_element_that_does_not_parse_names_its_field(
    variable: str, raw: str, field: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(TypedTuples, "oms", environ={variable: raw})

    assert caught.value.field == field
    assert f"{field}={raw!r}" in caught.value.message


def test_an_unknown_override_or_default_is_refused_by_name() -> None:
    with pytest.raises(ConfigError) as override:
        load(ServiceSettings, "oms", environ={}, prot=1)
    with pytest.raises(ConfigError) as default:
        load(ServiceSettings, "oms", environ={}, defaults={"hots": "x"})

    assert (override.value.field, default.value.field) == ("prot", "hots")


def test_parse_upstreams_reads_name_equals_address_pairs() -> None:
    text = " oms=127.0.0.1:50052 ,risk=risk:50053,"

    assert parse_upstreams(text) == {"oms": "127.0.0.1:50052", "risk": "risk:50053"}


@pytest.mark.parametrize("text", ["oms", "=127.0.0.1:1", "oms="])
def test_parse_upstreams_refuses_a_pair_without_name_or_address(text: str) -> None:
    with pytest.raises(ConfigError, match="is not name=host:port") as caught:
        parse_upstreams(text)

    assert caught.value.field == "upstreams"
