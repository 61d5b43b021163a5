"""``brokermesh control`` against a real control-plane process."""

from __future__ import annotations

import json

import pytest

from brokermesh.cli import main as cli_main

from .support import ControlPlaneProcess

pytestmark = pytest.mark.timeout(120)


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, object]:
    code = cli_main(["control", *args])
    out, err = capsys.readouterr()
    return code, json.loads(out if code == 0 else err)


def test_cli_changes_and_shows_controls(
    control_plane: ControlPlaneProcess,
    capsys: pytest.CaptureFixture[str],
) -> None:
    address = ("--address", control_plane.address)

    code, halted = _cli(capsys, *address, "halt", "--reason", "cli halt", "--operator", "ops-cli")
    assert code == 0
    assert isinstance(halted, dict)
    assert halted["controls"]["trading_halted"] is True
    assert halted["controls"]["updated_by"] == {"type": "ACTOR_TYPE_OPERATOR", "id": "ops-cli"}

    code, moded = _cli(
        capsys, *address, "mode", "ai-degraded", "--reason", "model down", "--operator", "ops-cli"
    )
    assert code == 0
    assert isinstance(moded, dict)
    assert moded["controls"]["mode"] == "DEGRADATION_MODE_AI_DEGRADED"

    # Connection options may also follow the action.
    code, shown = _cli(capsys, "show", *address)
    assert code == 0
    assert shown == moded

    code, resumed = _cli(
        capsys, *address, "resume", "--reason", "cli resume", "--operator", "ops-cli"
    )
    assert code == 0
    assert isinstance(resumed, dict)
    assert resumed["controls"]["trading_halted"] is False

    code, history = _cli(capsys, *address, "history", "--limit", "2")
    assert code == 0
    assert isinstance(history, dict)
    assert [c["reason"] for c in history["changes"]] == ["cli resume", "model down"]
    assert history["changes"][0]["actor"]["id"] == "ops-cli"


def test_cli_reports_refusals(
    control_plane: ControlPlaneProcess,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, error = _cli(
        capsys, "--address", control_plane.address, "halt", "--reason", "x", "--operator", "ops-cli"
    )

    assert code == 1
    assert isinstance(error, dict)
    assert error["error"] == "INVALID_ARGUMENT"
    assert "reason" in error["message"]
