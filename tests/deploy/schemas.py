"""Validates rendered objects: built-in kinds with kubernetes-validate, custom resources
with the CRD schemas vendored in ``k8s/schemas/crds``."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate

from .render import REPO, Obj, key

#: Kubernetes version the built-in kinds are checked against (kubectl here is 1.32).
KUBERNETES_VERSION = "1.32.0"
#: Vendored in the repository, so a fresh clone validates offline (provenance in its README).
CRD_SCHEMAS = REPO / "k8s" / "schemas" / "crds"


class SchemaMissing(LookupError):
    """The offline CRD schemas, or the schema of one kind, are not there."""


def crd_schema_dir() -> Path:
    """The folder of offline CRD schemas; SchemaMissing with the expected path if absent."""
    if not CRD_SCHEMAS.is_dir():
        raise SchemaMissing(
            f"offline CRD schemas not found at {CRD_SCHEMAS}: they are vendored in the "
            "repository as k8s/schemas/crds/<api group>/<kind>_<version>.json"
        )
    return CRD_SCHEMAS


def is_builtin(obj: Obj) -> bool:
    """Whether the object's API group is one of Kubernetes' own."""
    group = obj["apiVersion"].rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


def schema_path(api_version: str, kind: str) -> Path:
    """Where the offline schema of a custom resource kind lives (whether or not it exists)."""
    group, _, version = api_version.rpartition("/")
    return crd_schema_dir() / group / f"{kind.lower()}_{version}.json"


@functools.cache
def crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    """The strict JSON schema of a custom resource kind."""
    path = schema_path(api_version, kind)
    if not path.is_file():
        raise SchemaMissing(f"no offline schema for {api_version} {kind} (expected {path})")
    schema = json.loads(path.read_text())
    props = schema.setdefault("properties", {})
    props.setdefault("apiVersion", {"type": "string"})
    props.setdefault("kind", {"type": "string"})
    props.setdefault("metadata", {"type": "object"})
    return _strict(schema)


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy that refuses properties the schema does not name, so a misspelt field fails.

    Objects that preserve unknown fields or declare additionalProperties keep their rule.
    """
    schema = copy.deepcopy(schema)

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    if "metadata" in schema.get("properties", {}):
        schema["properties"]["metadata"] = {"type": "object"}
    return schema


def validate(obj: Obj) -> list[str]:
    """Schema errors of one rendered object (empty when it is valid)."""
    if is_builtin(obj):
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            return [f"{key(obj)}: {'.'.join(map(str, exc.path))}: {exc.message}"]
        except kubernetes_validate.SchemaNotFoundError as exc:
            return [f"{key(obj)}: no Kubernetes {KUBERNETES_VERSION} schema: {exc}"]
        return []
    schema = crd_schema(obj["apiVersion"], obj["kind"])
    validator_class = jsonschema.validators.validator_for(schema, jsonschema.Draft7Validator)
    return [
        f"{key(obj)}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator_class(schema).iter_errors(obj)
    ]
