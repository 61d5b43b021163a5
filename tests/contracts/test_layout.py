"""The installed import tree: every name under ``brokermesh.``, vendored contracts included."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GENERATED = REPO / "gen" / "python"
#: What generated code may import: our own tree, the protobuf and gRPC runtimes, the stdlib.
ALLOWED_TOP_LEVEL = {
    "brokermesh",
    "google",
    "grpc",
    "collections",
    "datetime",
    "typing",
    "warnings",
}
_IMPORT = re.compile(r"^(?:from|import) ([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)


def _python(script: str, *, path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env_path = [str(path)] if path is not None else []
    command = [sys.executable, "-c", textwrap.dedent(script)]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": ":".join(env_path), "PATH": "/usr/bin:/bin"},
    )


def test_the_distribution_installs_one_top_level_name() -> None:
    top_level = importlib.metadata.distribution("brokermesh").read_text("top_level.txt") or ""

    assert top_level.split() == ["brokermesh"]


def test_generated_code_imports_nothing_outside_brokermesh_and_its_runtimes() -> None:
    imported = {
        (name, str(path.relative_to(GENERATED)))
        for path in GENERATED.rglob("*.py*")
        if path.suffix in (".py", ".pyi")
        for name in _IMPORT.findall(path.read_text())
    }

    strays = sorted(entry for entry in imported if entry[0] not in ALLOWED_TOP_LEVEL)

    assert not strays, f"generated code imports outside brokermesh: {strays}"


def test_importing_brokermesh_leaves_a_top_level_buf_package_alone(tmp_path: Path) -> None:
    theirs = tmp_path / "buf"
    theirs.mkdir()
    (theirs / "__init__.py").write_text('OWNER = "someone else"\n')

    result = _python(
        """
        import brokermesh
        import brokermesh.trading.v1.order_pb2
        import buf
        print(buf.OWNER)
        """,
        path=tmp_path,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "someone else"


def test_protovalidate_finds_the_rules_of_generated_messages_without_a_buf_module() -> None:
    result = _python(
        """
        import sys
        import protovalidate
        from brokermesh.trading.v1 import order_query_pb2

        request = order_query_pb2.GetOrderRequest(order_id="42")
        violations = protovalidate.Validator().collect_violations(request)
        print(",".join(v.proto.rule_id for v in violations))
        print(",".join(sorted(m for m in sys.modules if m.split(".")[0] == "buf")))
        """
    )

    assert result.returncode == 0, result.stderr
    rules, buf_modules = result.stdout.split("\n")[:2]
    assert rules == "string.pattern"
    assert buf_modules == ""
