"""Route derivation: the gateway's routes are exactly the contracts' google.api.http rules."""

from __future__ import annotations

from google.api import annotations_pb2
from google.protobuf import descriptor_pool

from brokermesh.services.gateway.manifest import FRONTS
from brokermesh.services.gateway.routes import derive_bindings, stub_class
from brokermesh.trading.v1 import order_entry_pb2_grpc, order_query_pb2_grpc


def _rules_in_contracts() -> set[tuple[str, str, str, str]]:
    rules = set()
    for name in FRONTS:
        for method in descriptor_pool.Default().FindServiceByName(name).methods:
            rule = method.GetOptions().Extensions[annotations_pb2.http]
            verb = rule.WhichOneof("pattern")
            rules.add((method.full_name, verb.upper(), getattr(rule, verb), rule.body))
    return rules


def test_bindings_are_the_http_rules_of_the_fronted_services() -> None:
    bindings = derive_bindings(FRONTS)

    derived = {(b.method.full_name, b.verb, b.template, b.body) for b in bindings}

    assert derived == _rules_in_contracts()
    assert len(bindings) == len(derived)


def test_order_routes_are_the_ones_the_api_documents() -> None:
    routes = {(b.verb, b.path): b.method.name for b in derive_bindings(FRONTS)}

    assert routes == {
        ("POST", "/v1/orders"): "SubmitOrder",
        ("GET", "/v1/orders/{order_id}"): "GetOrder",
        ("GET", "/v1/orders"): "ListOrders",
    }


def test_path_and_query_fields_follow_the_template() -> None:
    by_method = {b.method.name: b for b in derive_bindings(FRONTS)}

    assert by_method["GetOrder"].path_fields == ("order_id",)
    assert by_method["GetOrder"].query_fields == ()
    assert [f.name for f in by_method["ListOrders"].query_fields] == ["account_id", "page_size"]
    assert by_method["SubmitOrder"].query_fields == ()


def test_each_binding_finds_its_generated_stub() -> None:
    stubs = {b.method.name: stub_class(b.service) for b in derive_bindings(FRONTS)}

    assert stubs["SubmitOrder"] is order_entry_pb2_grpc.OrderEntryServiceStub
    assert stubs["GetOrder"] is order_query_pb2_grpc.OrderQueryServiceStub
