"""``brokermesh token``: a development token the gateway's verifier accepts."""

from __future__ import annotations

import argparse
import stat
from pathlib import Path

import pytest

from brokermesh.cli import token as token_cli
from brokermesh.mesh import keys
from brokermesh.services.gateway import auth
from brokermesh.services.gateway.settings import DEFAULT_AUDIENCE, DEFAULT_ISSUER


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    token_cli.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_token_command_creates_keys_and_prints_a_verifiable_token(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    keys_dir = tmp_path / "keys"

    code = _run(["token", "--advisor", "ADV-1207", "--keys-dir", str(keys_dir)])

    assert code == 0
    token = capsys.readouterr().out.strip()
    verifier = auth.TokenVerifier(
        keys.load_public_key(keys_dir / "jwt-signing.pub.pem"),
        issuer=DEFAULT_ISSUER,
        audience=DEFAULT_AUDIENCE,
    )
    principal = verifier.verify(token)
    assert principal.subject == "ADV-1207"
    assert principal.role == "advisor"
    assert stat.S_IMODE((keys_dir / "jwt-signing.pem").stat().st_mode) == 0o600


def test_token_lifetime_follows_ttl_minutes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import jwt

    _run(["token", "--advisor", "ADV-2001", "--ttl-minutes", "5", "--keys-dir", str(tmp_path)])

    claims = jwt.decode(capsys.readouterr().out.strip(), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 300
    assert claims["sub"] == "ADV-2001"


def test_advisor_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _run(["token"])
