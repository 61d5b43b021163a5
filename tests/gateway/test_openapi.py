"""The OpenAPI document generated from the contracts."""

from __future__ import annotations

from typing import Any

import pytest

from brokermesh.services.gateway.manifest import FRONTS
from brokermesh.services.gateway.openapi import build_openapi
from brokermesh.services.gateway.routes import derive_bindings


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_openapi(derive_bindings(FRONTS))


def test_paths_and_methods_come_from_the_http_rules(document: dict[str, Any]) -> None:
    operations = {
        (path, verb): operation["operationId"]
        for path, item in document["paths"].items()
        for verb, operation in item.items()
    }

    assert operations == {
        ("/v1/orders", "post"): "SubmitOrder",
        ("/v1/orders", "get"): "ListOrders",
        ("/v1/orders/{order_id}", "get"): "GetOrder",
    }


def test_submit_order_request_schema_lists_every_field(document: dict[str, Any]) -> None:
    schema = document["components"]["schemas"]["SubmitOrderRequest"]

    assert list(schema["properties"]) == [
        "account_id",
        "symbol",
        "side",
        "quantity",
        "order_type",
        "limit_price",
        "time_in_force",
        "advisor_id",
        "client_order_id",
    ]
    assert schema["additionalProperties"] is False


def test_field_schemas_carry_the_json_conventions_and_constraints(
    document: dict[str, Any],
) -> None:
    schemas = document["components"]["schemas"]
    fields = schemas["SubmitOrderRequest"]["properties"]

    assert fields["limit_price"]["type"] == "string"
    assert fields["limit_price"]["format"] == "decimal"
    assert fields["account_id"]["pattern"] == "^ACC-[0-9A-Z]{1,20}$"
    assert fields["quantity"] == {
        "type": "integer",
        "format": "int64",
        "minimum": 0,
        "exclusiveMinimum": True,
        "maximum": 10_000_000,
    }
    assert fields["side"] == {"$ref": "#/components/schemas/Side"}
    assert schemas["Side"] == {"type": "string", "enum": ["UNSPECIFIED", "BUY", "SELL"]}
    assert schemas["Fill"]["properties"]["price"]["format"] == "decimal"
    accepted_at = schemas["SubmitOrderResponse"]["properties"]["accepted_at"]
    assert accepted_at == {"type": "string", "format": "date-time"}


def test_operations_document_parameters_bodies_and_answers(document: dict[str, Any]) -> None:
    submit = document["paths"]["/v1/orders"]["post"]
    get = document["paths"]["/v1/orders/{order_id}"]["get"]
    listing = document["paths"]["/v1/orders"]["get"]

    body = submit["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/SubmitOrderRequest"}
    assert {"201", "200", "400", "401", "403"} <= set(submit["responses"])
    assert [(p["name"], p["in"]) for p in get["parameters"]] == [("order_id", "path")]
    assert [(p["name"], p["in"]) for p in listing["parameters"]] == [
        ("account_id", "query"),
        ("page_size", "query"),
    ]


def test_bearer_security_applies_to_every_operation(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["bearer"]

    assert scheme == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert document["security"] == [{"bearer": []}]
    assert document["openapi"].startswith("3.0")
