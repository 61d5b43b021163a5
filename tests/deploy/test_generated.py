"""The per-service Kubernetes files and the DestinationRules are exactly what tools/gen_deploy.py
renders from the manifests, so none of them can drift from the manifests or from each other."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import yaml

from brokermesh.services.registry import MANIFESTS

from .render import REPO

GENERATOR = REPO / "tools" / "gen_deploy.py"


def generator() -> ModuleType:
    """tools/gen_deploy.py as a module (tools/ is no package)."""
    spec = importlib.util.spec_from_file_location("gen_deploy", GENERATOR)
    assert spec and spec.loader, f"cannot load {GENERATOR}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_files_are_what_the_generator_renders() -> None:
    gen = generator()

    differing = gen.stale(gen.outputs())

    assert not differing, (
        f"{[str(p.relative_to(REPO)) for p in differing]} differ from what the manifests "
        "render: run `.venv/bin/python tools/gen_deploy.py`"
    )


def test_every_service_file_in_the_base_is_generated() -> None:
    generated = set(generator().outputs())

    on_disk = set((REPO / "k8s" / "base" / "services").glob("*.yaml"))

    assert on_disk <= generated


def test_a_changed_manifest_changes_its_service_file_and_only_that() -> None:
    gen = generator()
    before = gen.outputs()
    moved = tuple(
        dataclasses.replace(m, grpc_port=50099) if m.name == "router" else m for m in MANIFESTS
    )

    after = gen.outputs(manifests=moved)

    changed = {p.name for p in before if before[p] != after[p]}
    assert changed == {"router.yaml"}
    router = after[REPO / "k8s" / "base" / "services" / "router.yaml"]
    deployment = next(d for d in yaml.safe_load_all(router) if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0] == {
        "name": "grpc",
        "containerPort": 50099,
        "protocol": "TCP",
    }


def test_the_check_mode_names_a_hand_edited_file_and_fails(tmp_path: Path) -> None:
    for folder in ("k8s", "istio"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    edited = tmp_path / "k8s" / "base" / "services" / "oms.yaml"
    edited.write_text(edited.read_text().replace("cpu: 100m", "cpu: 200m"))

    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--check", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"gen_deploy: {edited} differs from what the manifests render"
    ]
