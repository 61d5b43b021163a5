"""Every rendered object is valid against its schema: Kubernetes' own kinds in strict mode,
custom resources (Istio, nack, CloudNativePG, Prometheus operator) against the vendored CRDs."""

from __future__ import annotations

import pytest

from .render import OVERLAYS, REPO, TARGETS, Obj
from .schemas import SchemaMissing, crd_schema_dir, is_builtin, schema_path, validate


def test_the_offline_crd_schemas_are_vendored_in_the_repository() -> None:
    try:
        folder = crd_schema_dir()
    except SchemaMissing as exc:
        pytest.fail(str(exc), pytrace=False)

    assert folder.is_relative_to(REPO)
    assert any(folder.glob("*/*.json")), f"{folder} holds no schema"
    assert (folder / "LICENSE").is_file(), "the schemas' licence is not kept beside them"


def test_the_vendored_schemas_are_exactly_those_the_rendered_kinds_need(
    rendered: dict[str, list[Obj]],
) -> None:
    needed = {
        schema_path(obj["apiVersion"], obj["kind"])
        for objects in rendered.values()
        for obj in objects
        if not is_builtin(obj)
    }
    vendored = set(crd_schema_dir().glob("*/*.json"))

    assert not needed - vendored, f"rendered kinds without a schema: {sorted(needed - vendored)}"
    assert not vendored - needed, f"schemas no rendered object uses: {sorted(vendored - needed)}"


@pytest.mark.parametrize("target", list(TARGETS))
def test_every_rendered_object_matches_its_schema(
    rendered: dict[str, list[Obj]], target: str
) -> None:
    try:
        errors = [error for obj in rendered[target] for error in validate(obj)]
    except SchemaMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_renders_both_kubernetes_and_istio_objects(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    kinds = {obj["kind"] for obj in rendered[overlay]}
    assert {
        "Namespace",
        "Deployment",
        "NetworkPolicy",
        "AuthorizationPolicy",
        "PeerAuthentication",
        "Cluster",
        "Stream",
        "PrometheusRule",
    } <= kinds


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_deploys_everything_istio_renders(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    def ids(objects: list[Obj]) -> set[tuple[str, str, str]]:
        return {
            (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in objects
        }

    assert ids(rendered["istio"]) <= ids(rendered[overlay])


def test_a_misspelt_field_is_refused_by_the_strict_schemas(rendered: dict[str, list[Obj]]) -> None:
    import copy

    rule = copy.deepcopy(next(o for o in rendered["istio"] if o["kind"] == "DestinationRule"))
    rule["spec"]["trafficPolicy"]["outlierDetecton"] = {}
    deployment = copy.deepcopy(next(o for o in rendered["prod"] if o["kind"] == "Deployment"))
    deployment["spec"]["replicaz"] = 2

    assert any("outlierDetecton" in e for e in validate(rule))
    assert any("replicaz" in e for e in validate(deployment))
