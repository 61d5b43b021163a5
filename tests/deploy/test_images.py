"""One multi-stage image for all services, and a `make images` that never pretends."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from .render import REPO, Obj, of_kind

DOCKERFILE = REPO / "Dockerfile"
MAKEFILE = REPO / "mk" / "images.mk"


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
