"""One multi-stage image for all services, built from the locked dependency set, a `make images`
that never pretends, and a `make release-pin` that pins an overlay to the pushed digest."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .render import REPO, Obj, load, of_kind, render

DOCKERFILE = REPO / "Dockerfile"
MAKEFILE = REPO / "mk" / "images.mk"
#: The image the overlays run, as the prod overlay names it.
IMAGE = next(
    i["newName"]
    for i in yaml.safe_load(
        (REPO / "k8s" / "overlays" / "prod" / "kustomization.yaml").read_text()
    )["images"]
    if i["name"] == "brokermesh"
)


def stages() -> list[list[str]]:
    """The Dockerfile's instructions, one list per stage (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            result.append([])
        if result:
            result[-1].append(line)
    return result


def test_the_base_image_is_pinned_to_a_python_311_patch_release() -> None:
    match = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)

    assert match, "the base image is not set by ARG PYTHON_IMAGE"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", match[1])


def test_the_runtime_stage_copies_only_the_venv_and_installs_no_compiler() -> None:
    builder, runtime = stages()[0], stages()[-1]
    copies = [i for i in runtime if i.upper().startswith("COPY")]

    assert len(stages()) >= 2
    assert "AS builder" in builder[0]
    assert copies == ["COPY --from=builder /opt/venv /opt/venv"]
    assert not any(re.search(r"\b(gcc|g\+\+|build-essential|clang|make)\b", i) for i in runtime)


def test_the_image_runs_python_m_as_the_uid_the_manifests_expect(
    rendered: dict[str, list[Obj]],
) -> None:
    runtime = stages()[-1]
    user = [i.split()[1] for i in runtime if i.startswith("USER ")]
    uids = {
        d["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
        for d in of_kind(rendered["prod"], "Deployment")
    }

    assert user == ["10001:10001"]
    assert uids == {10001}
    assert 'ENTRYPOINT ["python", "-m"]' in runtime
    assert any(i.startswith("CMD [") for i in runtime)


def test_the_build_context_leaves_out_the_venv_and_git() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()

    assert lines[lines.index("**")] == "**"
    assert not any(line.startswith("!") and (".venv" in line or ".git" in line) for line in lines)


@pytest.mark.parametrize("engine", ["", "/bin/false"], ids=["absent", "unreachable"])
def test_make_images_fails_and_says_so_without_a_container_engine(engine: str) -> None:
    make = shutil.which("make")
    assert make, "make is needed to run the images target"

    result = subprocess.run(
        [make, "-f", str(MAKEFILE), "images", f"CONTAINER_ENGINE={engine}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode != 0
    assert "no container engine is available" in result.stderr
    assert "no image was built" in result.stderr


# ---------------------------------------------------------------------- the lock
def test_the_builder_installs_the_project_with_the_lock_as_constraints() -> None:
    builder = stages()[0]
    copies = [i for i in builder if i.startswith("COPY ")]
    installs = [i for i in builder if i.startswith("RUN ") and "pip install" in i]
    context = (REPO / ".dockerignore").read_text().splitlines()

    assert any("requirements.lock" in c.split()[1:-1] for c in copies)
    assert len(installs) == 1
    assert re.search(
        r"pip install .*(-c|--constraint)[ =]requirements\.lock .*\.(\s|$)", installs[0]
    )
    assert "!requirements.lock" in context


def _runtime_closure() -> dict[str, str]:
    """Every distribution the project needs at run time (no extras), with its installed version."""
    seen: dict[str, str] = {}
    pending = ["brokermesh"]
    while pending:
        name = str(canonicalize_name(pending.pop()))
        if name in seen:
            continue
        seen[name] = metadata.version(name)
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    del seen["brokermesh"]
    return seen


def test_the_lock_pins_every_runtime_dependency_at_the_tested_version() -> None:
    pins: dict[str, str] = {
        str(canonicalize_name(name)): version
        for name, _, version in (
            line.strip().partition("==")
            for line in (REPO / "requirements.lock").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        )
    }

    needed = _runtime_closure()

    assert {n: pins.get(n) for n in needed} == needed


def test_the_build_context_builds_a_wheel_with_every_data_file(tmp_path: Path) -> None:
    context = tmp_path / "context"
    admitted = [
        line[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    for entry in admitted:
        source, target = REPO / entry, context / entry
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    data_files = {
        str(p.relative_to(REPO / "src"))
        for p in (REPO / "src" / "brokermesh").rglob("*")
        if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts
    }

    wheel_command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    result = subprocess.run(
        [*wheel_command, "-q", "-w", str(tmp_path / "dist"), str(context)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("brokermesh-*.whl")
    assert data_files and data_files <= set(zipfile.ZipFile(wheel).namelist())


# ---------------------------------------------------------------------- make release-pin
DIGEST = "sha256:" + "0123456789abcdef" * 4


def _release_pin(tmp_path: Path, *variables: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run `make release-pin` on a copy of k8s/ and istio/; (result, the copy's overlays)."""
    shutil.copytree(REPO / "k8s", tmp_path / "k8s")
    shutil.copytree(REPO / "istio", tmp_path / "istio")
    make = shutil.which("make")
    assert make, "make is needed to run the release-pin target"
    overlay = tmp_path / "k8s" / "overlays" / "prod"
    target = [make, "-s", "-f", str(MAKEFILE), "release-pin"]
    result = subprocess.run(
        [*target, f"PIN_PYTHON={sys.executable}", f"OVERLAY_DIR={overlay}", *variables],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result, tmp_path / "k8s" / "overlays"


def _images(overlay: Path) -> set[str]:
    return {
        c["image"]
        for obj in load(render(overlay))
        if obj["kind"] in {"Deployment", "Job"}
        for c in obj["spec"]["template"]["spec"]["containers"]
    }


def test_release_pin_pins_every_workload_of_the_overlay_to_the_digest(tmp_path: Path) -> None:
    result, overlays = _release_pin(tmp_path, f"DIGEST={DIGEST}")

    assert result.returncode == 0, result.stderr
    assert _images(overlays / "prod") == {f"{IMAGE}:0.1.0@{DIGEST}"}
    assert _images(overlays / "dev") == {f"{IMAGE}:0.1.0"}


@pytest.mark.parametrize(
    ("digest", "message"),
    [
        ("", "set DIGEST=sha256:<64 hex digits>"),
        ("sha256:abc", "is not sha256: followed by 64 lower-case hex digits"),
        ("0123456789abcdef" * 4, "is not sha256: followed by 64 lower-case hex digits"),
    ],
    ids=["missing", "short", "no-algorithm"],
)
def test_release_pin_refuses_a_malformed_digest_and_changes_nothing(
    tmp_path: Path, digest: str, message: str
) -> None:
    before = (REPO / "k8s" / "overlays" / "prod" / "kustomization.yaml").read_text()

    result, overlays = _release_pin(tmp_path, f"DIGEST={digest}")

    assert result.returncode != 0
    assert message in result.stderr
    assert (overlays / "prod" / "kustomization.yaml").read_text() == before
