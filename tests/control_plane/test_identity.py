"""The caller's SPIFFE id from an ``x-forwarded-client-cert`` header, as Envoy writes it."""

from __future__ import annotations

import pytest

from brokermesh.services.control_plane.identity import spiffe_id

CONSOLE = "spiffe://cluster.local/ns/brokermesh-ops/sa/ops-console"


def test_uri_of_a_single_element_is_the_identity() -> None:
    header = f'By=spiffe://cluster.local/ns/x/sa/control-plane;Hash=ab12;Subject="";URI={CONSOLE}'

    assert spiffe_id(header) == CONSOLE


def test_only_the_last_element_counts_because_earlier_ones_come_from_the_caller() -> None:
    forged = "URI=spiffe://cluster.local/ns/brokermesh-ops/sa/admin"
    header = f"{forged},By=spiffe://cluster.local/ns/x/sa/control-plane;URI={CONSOLE}"

    assert spiffe_id(header) == CONSOLE


def test_quoted_values_may_hold_separators() -> None:
    header = (
        'Hash=ab12;Subject="CN=ops,O=Broker;OU=\\"Ops\\"";'
        f'URI="{CONSOLE}";DNS=console.brokermesh-ops'
    )

    assert spiffe_id(header) == CONSOLE


@pytest.mark.parametrize(
    "header",
    [
        "",
        "By=spiffe://cluster.local/ns/x/sa/control-plane;Hash=ab12",
        "URI=https://ops.example/console",
        f"URI={CONSOLE},Hash=ab12",
    ],
    ids=["empty", "no-uri", "not-spiffe", "last-element-without-uri"],
)
def test_header_without_a_spiffe_uri_in_its_last_element_names_nobody(header: str) -> None:
    assert spiffe_id(header) == ""
