"""Pins an overlay's brokermesh image to the digest of a pushed image (``make release-pin``).

The overlays name the image by version tag (``images:`` in their kustomization.yaml), because
the digest exists only once the image is pushed. Before a release, this writes the pushed
digest into the ``brokermesh`` entry, so every Deployment and the migration Job render as
``<image>:<tag>@sha256:<digest>`` and the kubelet runs exactly the image that was built.
It edits that one entry in place and keeps the rest of the file, comments included::

    python tools/pin_image.py --overlay k8s/overlays/prod --digest sha256:<64 hex digits>
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

IMAGE_NAME = "brokermesh"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_ENTRY = re.compile(rf"^(?P<indent>\s*)- name: {IMAGE_NAME}\s*$")


class PinError(ValueError):
    """The digest or the overlay cannot be pinned; the message says which and why."""


def pin(text: str, digest: str) -> str:
    """``text`` (a kustomization.yaml) with the brokermesh image entry pinned to ``digest``."""
    if not DIGEST.fullmatch(digest):
        raise PinError(f"digest {digest!r} is not sha256: followed by 64 lower-case hex digits")
    lines = text.splitlines(keepends=True)
    entries = [(i, m) for i, line in enumerate(lines) if (m := _ENTRY.match(line))]
    if len(entries) != 1:
        raise PinError(f"expected one `- name: {IMAGE_NAME}` image entry, found {len(entries)}")

    # The entry's keys are the lines indented past its dash, up to the next blank or outdent.
    start, match = entries[0]
    key_indent = " " * (len(match["indent"]) + 2)
    end = start + 1
    while end < len(lines) and lines[end].startswith(key_indent) and lines[end].strip():
        end += 1
    entry = [line for line in lines[start + 1 : end] if not line.lstrip().startswith("digest:")]
    pinned = [lines[start], *entry, f"{key_indent}digest: {digest}\n"]
    result = "".join([*lines[:start], *pinned, *lines[end:]])

    images = (yaml.safe_load(result) or {}).get("images", [])
    if [i.get("digest") for i in images if i.get("name") == IMAGE_NAME] != [digest]:
        raise PinError(f"the `{IMAGE_NAME}` entry is not under `images:`; nothing was pinned")
    return result


def main(argv: list[str] | None = None) -> int:
    """Pin the overlay given on the command line; exit 2 with the reason when it cannot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overlay", type=Path, required=True, help="the overlay's folder")
    parser.add_argument("--digest", required=True, help="sha256:<64 hex digits>")
    args = parser.parse_args(argv)

    path = args.overlay / "kustomization.yaml"
    try:
        path.write_text(pin(path.read_text(), args.digest))
    except (OSError, PinError) as exc:
        print(f"release-pin: {path}: {exc}", file=sys.stderr)
        return 2
    print(f"release-pin: {path}: {IMAGE_NAME} pinned to {args.digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
