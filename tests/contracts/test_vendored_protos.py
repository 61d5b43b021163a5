"""Contract tests for the Protobuf sources vendored under ``proto/`` (buf/validate, google/api).

``buf/validate/validate.proto`` was reconstructed from the FileDescriptorProto that the
protovalidate wheel embeds in its generated module, so it must compile back to exactly that
descriptor. The ``google/api`` files are verbatim copies from googleapis-common-protos.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import protovalidate
import pytest
from google.protobuf import descriptor_pb2
from grpc_tools import protoc  # type: ignore[import-untyped]

REPO_ROOT = Path(__file__).resolve().parents[2]
VENDOR_DIR = REPO_ROOT / "proto"
VALIDATE_PROTO = "buf/validate/validate.proto"


def _wheel_validate_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """Return the FileDescriptorProto of validate.proto as shipped in the protovalidate wheel.

    The generated ``validate_pb`` module passes the serialized descriptor to protobuf-py's
    ``file_desc``; the resulting ``DescFile`` keeps it as ``.proto``, reachable from any
    exported message type of that file.
    """
    desc_file = protovalidate.FieldPathPb.desc().file
    assert desc_file.name == VALIDATE_PROTO
    return descriptor_pb2.FileDescriptorProto.FromString(desc_file.proto.to_binary())


def _compile_vendored(
    proto_path: str,
    out_dir: Path,
) -> descriptor_pb2.FileDescriptorSet:
    """Compile one vendored file with grpc_tools' protoc and return its descriptor set."""
    well_known_include = resources.files("grpc_tools") / "_proto"
    descriptor_set = out_dir / "vendored.binpb"
    exit_code: int = protoc.main(
        [
            "grpc_tools.protoc",
            f"--proto_path={VENDOR_DIR}",
            f"--proto_path={well_known_include}",
            f"--descriptor_set_out={descriptor_set}",
            proto_path,
        ]
    )
    assert exit_code == 0, f"protoc failed to compile {proto_path}"
    return descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())


def test_vendored_validate_proto_matches_the_protovalidate_descriptor(
    tmp_path: Path,
) -> None:
    compiled = _compile_vendored(VALIDATE_PROTO, tmp_path)
    vendored = next(f for f in compiled.file if f.name == VALIDATE_PROTO)
    shipped = _wheel_validate_descriptor()

    vendored.ClearField("source_code_info")
    shipped.ClearField("source_code_info")

    assert vendored == shipped


@pytest.mark.parametrize("name", ["annotations.proto", "http.proto"])
def test_vendored_google_api_proto_is_a_verbatim_copy_from_googleapis_common_protos(
    name: str,
) -> None:
    installed = resources.files("google.api") / name
    assert (VENDOR_DIR / "google" / "api" / name).read_bytes() == installed.read_bytes()
