"""The contracts lint clean, stay compatible, generate the committed code, declare timeouts."""

from __future__ import annotations

import filecmp
import importlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from brokermesh.mesh.clients import method_timeout_s

REPO = Path(__file__).resolve().parents[2]
BUF = Path(sys.executable).with_name("buf")
BASELINE = REPO / "proto" / "baseline.binpb"


def _buf(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    if not BUF.exists():
        pytest.fail(f"buf not found at {BUF}: run `make venv` (it installs buf-bin)")
    return subprocess.run([str(BUF), *args], cwd=cwd, capture_output=True, text=True, check=False)


def test_contracts_pass_buf_lint() -> None:
    result = _buf("lint")

    assert result.returncode == 0, result.stdout + result.stderr


def test_contracts_are_compatible_with_the_committed_baseline() -> None:
    result = _buf("breaking", "--against", str(BASELINE))

    assert result.returncode == 0, result.stdout + result.stderr


def test_deleting_a_field_is_reported_as_a_breaking_change(tmp_path: Path) -> None:
    shutil.copytree(REPO / "proto", tmp_path / "proto")
    shutil.copy(REPO / "buf.yaml", tmp_path)
    contract = tmp_path / "proto" / "brokermesh" / "trading" / "v1" / "order_query.proto"
    contract.write_text(contract.read_text().replace("string venue = 9;", "reserved 9;"))

    result = _buf("breaking", "--against", str(BASELINE), cwd=tmp_path)

    assert result.returncode != 0
    assert 'field "9" with name "venue"' in result.stdout


def test_generated_code_matches_the_contracts(tmp_path: Path) -> None:
    result = _buf("generate", "--output", str(tmp_path))
    assert result.returncode == 0, result.stderr

    fresh, committed = tmp_path / "gen" / "python", REPO / "gen" / "python"
    stale = _differences(filecmp.dircmp(fresh, committed))

    assert not stale, f"gen/python is stale, run `make gen`: {stale}"


def _differences(cmp: filecmp.dircmp[str]) -> list[str]:
    found = [*cmp.left_only, *cmp.right_only, *cmp.diff_files]
    found = [name for name in found if name != "__pycache__"]
    for sub in cmp.subdirs.values():
        found.extend(_differences(sub))
    return found


def test_every_rpc_of_the_contracts_declares_its_timeout() -> None:
    methods = [
        method
        for path in sorted((REPO / "gen" / "python" / "brokermesh").rglob("*_pb2.py"))
        for service in _module_of(path).DESCRIPTOR.services_by_name.values()
        for method in service.methods
    ]

    undeclared = [m.full_name for m in methods if method_timeout_s(m) is None]

    assert len(methods) > 10
    assert not undeclared, f"declare (brokermesh.common.v1.timeout_ms) on: {undeclared}"
    assert all(0 < (method_timeout_s(m) or 0) <= 30 for m in methods)


def _module_of(path: Path) -> Any:
    relative = path.relative_to(REPO / "gen" / "python").with_suffix("")
    return importlib.import_module(".".join(relative.parts))
