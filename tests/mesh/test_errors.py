"""The runtime's error tree: each class's status code, and the fields an error carries."""

from __future__ import annotations

import grpc
import pytest

from brokermesh.mesh import errors


@pytest.mark.parametrize(
    ("error_class", "status"),
    [
        (errors.MeshError, grpc.StatusCode.INTERNAL),
        (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.NotFound, grpc.StatusCode.NOT_FOUND),
        (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
        (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
        (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
        (errors.Aborted, grpc.StatusCode.ABORTED),
        (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
        (errors.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
        (errors.ConfigError, grpc.StatusCode.FAILED_PRECONDITION),
    ],
)
def test_each_error_class_maps_to_one_status_code(
    error_class: type[errors.MeshError], status: grpc.StatusCode
) -> None:
    assert issubclass(error_class, errors.MeshError)
    assert error_class.status == status


def test_an_error_carries_its_message_field_and_code() -> None:
    error = errors.InvalidArgument("quantity must be positive", field="quantity", code="QTY")

    assert (str(error), error.message) == ("quantity must be positive", "quantity must be positive")
    assert (error.field, error.code) == ("quantity", "QTY")


def test_the_code_defaults_to_the_class_name_and_the_field_to_empty() -> None:
    error = errors.Unavailable("venue SIMX is down")

    assert (error.code, error.field) == ("Unavailable", "")
