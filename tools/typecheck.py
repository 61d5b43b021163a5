"""Type-check the ``brokermesh`` import tree as installed, with mypy.

The distribution maps several folders onto one package (see setup.py), which
mypy cannot follow through an editable install. This builds the same tree
from symbolic links under ``.mypy-tree/`` and checks it as one package.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from mypy import api

REPO = Path(__file__).resolve().parents[1]
TREE = REPO / ".mypy-tree"


def build_tree() -> Path:
    """Lay out ``brokermesh/`` as it installs, each entry a link to its source folder."""
    shutil.rmtree(TREE, ignore_errors=True)
    package = TREE / "brokermesh"
    package.mkdir(parents=True)
    for entry in (REPO / "src" / "brokermesh").iterdir():
        (package / entry.name).symlink_to(entry)
    (package / "mesh").symlink_to(REPO / "mesh")
    (package / "services").symlink_to(REPO / "services")
    (package / "_buf").symlink_to(REPO / "gen" / "python" / "buf")
    for domain in (REPO / "gen" / "python" / "brokermesh").iterdir():
        if domain.is_dir() and not (package / domain.name).exists():
            (package / domain.name).symlink_to(domain)
    return TREE


def main() -> int:
    build_tree()
    stdout, stderr, status = api.run(
        [
            "--config-file",
            str(REPO / "pyproject.toml"),
            "--python-executable",
            sys.executable,
            "-p",
            "brokermesh",
        ]
    )
    sys.stdout.write(stdout)
    sys.stderr.write(stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
