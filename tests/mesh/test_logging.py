"""Log context: correlation ids from callers (adopted when sane, replaced otherwise) and the
fields a handler adds to its request's log line."""

from __future__ import annotations

import uuid

import pytest

from brokermesh.mesh.logging import (
    MAX_CORRELATION_ID_LENGTH,
    annotate,
    correlation_id,
    request_fields_var,
)


@pytest.mark.parametrize("offered", ["corr-42", "c" * MAX_CORRELATION_ID_LENGTH, "a b"])
def test_a_sane_correlation_id_is_adopted(offered: str) -> None:
    assert correlation_id(offered) == offered


@pytest.mark.parametrize(
    "offered",
    ["", "c" * (MAX_CORRELATION_ID_LENGTH + 1), "corr-\u00e9", "corr\n42", "corr\x00"],
    ids=["empty", "too-long", "not-ascii", "newline", "nul"],
)
def test_anything_else_is_replaced_by_a_fresh_uuid(offered: str) -> None:
    replaced = correlation_id(offered)

    assert replaced != offered
    assert uuid.UUID(replaced).version == 4


def test_annotating_a_field_named_like_a_log_record_attribute_is_refused() -> None:
    with pytest.raises(ValueError, match="msg"):
        annotate(msg="overwritten")


def test_annotating_outside_a_request_changes_nothing() -> None:
    annotate(state="FILLED")

    assert request_fields_var.get() is None
