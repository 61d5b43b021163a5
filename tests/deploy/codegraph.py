"""Derives each service's call graph from its code, so the manifests can be held to it.

Every module of a service's package is parsed (``ast``, nothing is imported or run) for what
the deployment has to allow:

- the callees it asks the client factory for, ``clients.stub("oms", ...)`` or
  ``clients.channel("oms")``, and those it reaches through an indirection listed in
  :data:`INDIRECT_CALLEES`; a callee the parser cannot name is reported, and so is a gRPC
  channel opened around the factory;
- the backends whose settings it reads: ``nats_url`` for NATS, ``database_url`` for
  PostgreSQL, and the relay's own session DSN for a direct path to the instances.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from brokermesh.mesh.manifest import Backend, ServiceManifest

from .callgraph import SESSION_CLIENTS
from .render import REPO

SERVICES_DIR = REPO / "services"
#: Client-factory methods whose first argument names the callee.
FACTORY_METHODS = frozenset({"stub", "channel"})
#: gRPC calls that open a channel without the factory, and so without the manifest's check.
RAW_CHANNELS = frozenset({"insecure_channel", "secure_channel"})
#: Settings whose use means a backend.
BACKEND_SETTINGS: Mapping[str, Backend] = {
    "nats_url": Backend.NATS,
    "database_url": Backend.POSTGRES,
}
#: Settings whose use means a session of its own on the PostgreSQL primary.
SESSION_SETTINGS = frozenset({"relay_database_url", "relay_dsn"})
#: Functions that choose a callee at run time, and the module-level constant that feeds them:
#: the gateway binds each HTTP route to the service in its manifest's ``calls`` that serves
#: the route's gRPC service, for every gRPC service its package lists in ``FRONTS``.
INDIRECT_CALLEES: Mapping[str, str] = {"_callee": "FRONTS"}


@dataclass
class CodeGraph:
    """What one package's code reaches, and what the parser could not tell."""

    callees: set[str] = field(default_factory=set)
    backends: set[Backend] = field(default_factory=set)
    session: bool = False
    problems: list[str] = field(default_factory=list)


def package_dir(manifest: ServiceManifest) -> Path:
    """The folder of the package a manifest's service runs from."""
    return SERVICES_DIR / manifest.entry_module.removeprefix("brokermesh.services.")


def _string_constants(package: Path, name: str) -> tuple[str, ...] | None:
    """The strings of the module-level tuple ``name`` in ``package``, if it defines one."""
    for path in sorted(package.rglob("*.py")):
        for node in ast.parse(path.read_text(), str(path)).body:
            target: ast.expr
            if isinstance(node, ast.AnnAssign):
                target, value = node.target, node.value
            elif isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            else:
                continue
            if not (isinstance(target, ast.Name) and target.id == name):
                continue
            if isinstance(value, ast.Tuple) and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in value.elts
            ):
                return tuple(str(e.value) for e in value.elts if isinstance(e, ast.Constant))
    return None


def _called_name(node: ast.Call) -> str:
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    if isinstance(node.func, ast.Name):
        return node.func.id
    return ""


def _indirect_callees(
    package: Path, function: str, manifests: Sequence[ServiceManifest], graph: CodeGraph
) -> set[str]:
    """The services an indirection function can resolve to: the servers of its constant's."""
    constant = INDIRECT_CALLEES[function]
    grpc_services = _string_constants(package, constant)
    if grpc_services is None:
        graph.problems.append(f"{package.name}: {function}() is fed by {constant}, not found")
        return set()
    callees = set()
    for grpc_service in grpc_services:
        servers = {m.name for m in manifests if grpc_service in m.serves}
        if not servers:
            graph.problems.append(f"{package.name}: no service serves {grpc_service}")
        callees |= servers
    return callees


def scan(package: Path, manifests: Sequence[ServiceManifest]) -> CodeGraph:
    """The call graph of every module under ``package``."""
    graph = CodeGraph()
    for path in sorted(package.rglob("*.py")):
        where = path.relative_to(package.parent)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute):
                if node.attr in BACKEND_SETTINGS:
                    graph.backends.add(BACKEND_SETTINGS[node.attr])
                graph.session |= node.attr in SESSION_SETTINGS
                continue
            if not isinstance(node, ast.Call):
                continue
            called = _called_name(node)
            if called in RAW_CHANNELS:
                graph.problems.append(
                    f"{where}:{node.lineno}: opens a gRPC channel with {called}() instead of "
                    "through the client factory, which only dials the manifest's calls"
                )
            if not (isinstance(node.func, ast.Attribute) and called in FACTORY_METHODS):
                continue
            argument = node.args[0] if node.args else None
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                graph.callees.add(argument.value)
            elif isinstance(argument, ast.Call) and _called_name(argument) in INDIRECT_CALLEES:
                graph.callees |= _indirect_callees(
                    package, _called_name(argument), manifests, graph
                )
            else:
                shown = ast.unparse(argument) if argument is not None else "no argument"
                graph.problems.append(
                    f"{where}:{node.lineno}: cannot tell which service .{called}({shown}) calls"
                )
    return graph


def code_problems(manifest: ServiceManifest, graph: CodeGraph) -> list[str]:
    """Every difference between what ``manifest`` declares and what its code does."""
    declared = set(manifest.calls)
    used = set(manifest.backends)
    problems = [f"{manifest.name}: {p}" for p in graph.problems]
    problems += [
        f"{manifest.name}: the code calls {c}, which its manifest does not declare in calls"
        for c in sorted(graph.callees - declared)
    ]
    problems += [
        f"{manifest.name}: the manifest declares a call to {c} that its code never makes"
        for c in sorted(declared - graph.callees)
    ]
    problems += [
        f"{manifest.name}: the code reads the {b} settings, but its manifest lacks Backend.{b.name}"
        for b in sorted(graph.backends - used)
    ]
    problems += [
        f"{manifest.name}: the manifest names Backend.{b.name}, whose settings its code never reads"
        for b in sorted(used - graph.backends)
    ]
    if graph.session != (manifest.name in SESSION_CLIENTS):
        problems.append(
            f"{manifest.name}: the code {'reads' if graph.session else 'does not read'} a session "
            f"DSN of its own, but SESSION_CLIENTS {'lacks' if graph.session else 'lists'} it"
        )
    return problems


def all_code_problems(
    manifests: Sequence[ServiceManifest], packages: Iterable[tuple[ServiceManifest, Path]]
) -> list[str]:
    """:func:`code_problems` of each (manifest, package folder) pair."""
    return [p for m, folder in packages for p in code_problems(m, scan(folder, manifests))]
