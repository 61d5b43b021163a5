"""checkov finds nothing to fail in what each overlay renders, and every suppression says why."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .render import OVERLAYS, REPO, Obj, key

#: The version the manifests were checked with; another version may add or change checks.
CHECKOV_VERSION = "3.3.30"
#: checkov pins packaging<24 and pytest needs packaging>=24, so it lives in a venv of its own.
CHECKOV_VENV = REPO / ".venv-checkov"
INSTALL_HINT = (
    f"checkov {CHECKOV_VERSION} is required in its own virtual environment, since "
    "its packaging<24 pin conflicts with pytest's packaging>=24: run `make venv`, "
    f"which installs it into {CHECKOV_VENV.name}/ (by hand: `python3 -m venv "
    f"{CHECKOV_VENV.name} && {CHECKOV_VENV.name}/bin/pip install "
    f"checkov=={CHECKOV_VERSION}`), or set $BROKERMESH_CHECKOV to a checkov "
    f"{CHECKOV_VERSION} executable"
)
#: Checks suppressed in the manifests, and why; see the annotations themselves for the text.
ALLOWED_SUPPRESSIONS = {
    "CKV_K8S_43",  # image digest: exists once the image is pushed; make release-pin sets it
    "CKV_K8S_35",  # PGPASSWORD from a Secret as an env var (asyncpg reads it there)
    "CKV_K8S_8",  # liveness probe: only on a pod that serves nothing (the ops toolbox)
}


def _has_make_target(target: str) -> bool:
    """Whether the Makefile or one of the mk/*.mk files it includes defines ``target``."""
    files = [REPO / "Makefile", *sorted((REPO / "mk").glob("*.mk"))]
    return any(line.startswith(f"{target}:") for f in files for line in f.read_text().splitlines())


def checkov_executable() -> str:
    """The checkov to run: $BROKERMESH_CHECKOV, .venv-checkov's, the one beside this Python,
    or PATH's."""
    candidates = [
        os.environ.get("BROKERMESH_CHECKOV", ""),
        str(CHECKOV_VENV / "bin" / "checkov"),
        str(Path(sys.executable).parent / "checkov"),
        shutil.which("checkov") or "",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(INSTALL_HINT, pytrace=False)


@pytest.fixture(scope="module", params=OVERLAYS)
def checkov_report(
    request: pytest.FixtureRequest,
    rendered_text: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[str, dict[str, Any]]:
    """checkov's JSON report on one overlay's rendered manifests (run once per overlay)."""
    overlay: str = request.param
    manifest = tmp_path_factory.mktemp(f"checkov-{overlay}") / f"{overlay}.yaml"
    manifest.write_text(rendered_text[overlay])
    result = subprocess.run(
        [
            checkov_executable(),
            "--file",
            str(manifest),
            "--framework",
            "kubernetes",
            "--output",
            "json",
            "--compact",
            "--quiet",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"checkov printed no JSON report (exit {result.returncode}):\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}",
            pytrace=False,
        )
    return overlay, report[0] if isinstance(report, list) else report


def test_the_pinned_checkov_version_is_installed() -> None:
    result = subprocess.run(
        [checkov_executable(), "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.stdout.strip() == CHECKOV_VERSION, INSTALL_HINT


def test_checkov_reports_no_failed_check(checkov_report: tuple[str, dict[str, Any]]) -> None:
    overlay, report = checkov_report
    summary = report["summary"]
    failed = [
        f"{c['check_id']} {c['check_name']}: {c['resource']}"
        for c in report.get("results", {}).get("failed_checks", [])
    ]

    assert summary["resource_count"] > 0, f"checkov scanned nothing in {overlay}"
    assert summary["parsing_errors"] == 0
    assert summary["failed"] == 0, f"{overlay}:\n" + "\n".join(failed)


def test_checkov_skips_only_the_justified_checks(
    checkov_report: tuple[str, dict[str, Any]],
) -> None:
    _, report = checkov_report
    skipped = {c["check_id"] for c in report.get("results", {}).get("skipped_checks", [])}

    assert skipped <= ALLOWED_SUPPRESSIONS


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_checkov_suppression_names_its_reason(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    problems = []
    for obj in rendered[overlay]:
        for name, value in (obj["metadata"].get("annotations") or {}).items():
            if not name.startswith("checkov.io/skip"):
                continue
            check, _, reason = value.partition("=")
            if check not in ALLOWED_SUPPRESSIONS or len(reason.split()) < 8 or "=" in reason:
                problems.append(f"{key(obj)} {name}: {value!r}")
            if check == "CKV_K8S_35" and not any(
                "secretKeyRef" in (env.get("valueFrom") or {})
                for c in obj["spec"]["template"]["spec"]["containers"]
                for env in c.get("env", [])
            ):
                problems.append(f"{key(obj)} suppresses CKV_K8S_35 but reads no secret from env")
            if check == "CKV_K8S_43" and not (
                "make release-pin" in reason and _has_make_target("release-pin")
            ):
                problems.append(f"{key(obj)} suppresses CKV_K8S_43 without a working way to pin")
            containers = obj["spec"]["template"]["spec"]["containers"]
            if check == "CKV_K8S_8" and any(
                c.get("ports") or "readinessProbe" not in c for c in containers
            ):
                problems.append(f"{key(obj)} suppresses CKV_K8S_8 but serves a port or is unprobed")

    assert not problems, "\n".join(problems)
