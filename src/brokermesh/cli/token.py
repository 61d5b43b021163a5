"""``brokermesh token``: issue a development bearer token for an advisor.

The first run creates the Ed25519 signing key pair in ``--keys-dir``
(``jwt-signing.pem``, mode 0600, and ``jwt-signing.pub.pem``, which the
gateway reads); later runs reuse it. The token is printed alone on stdout, so
``TOKEN=$(brokermesh token --advisor ADV-1207)`` works.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_KEYS_DIR = Path(".brokermesh/keys")
DEFAULT_TTL_MINUTES = 480


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``token`` to the ``brokermesh`` command."""
    parser = subparsers.add_parser(
        "token",
        help="print a development bearer token for an advisor",
        description=__doc__,
    )
    parser.add_argument(
        "--advisor",
        required=True,
        metavar="ID",
        help="advisor id the token speaks for (its sub claim), e.g. ADV-1207",
    )
    parser.add_argument(
        "--ttl-minutes",
        type=_positive_minutes,
        default=DEFAULT_TTL_MINUTES,
        help=f"minutes until the token expires (default {DEFAULT_TTL_MINUTES})",
    )
    parser.add_argument(
        "--keys-dir",
        type=Path,
        default=DEFAULT_KEYS_DIR,
        help=f"folder of the signing key pair (default {DEFAULT_KEYS_DIR})",
    )
    parser.set_defaults(func=_issue)


def _issue(args: argparse.Namespace) -> int:
    from brokermesh.services.gateway.auth import ensure_key_pair, issue_token

    key = ensure_key_pair(args.keys_dir)
    print(issue_token(key, args.advisor, ttl_s=args.ttl_minutes * 60))
    return 0


def _positive_minutes(text: str) -> int:
    minutes = int(text)
    if minutes <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of minutes")
    return minutes
