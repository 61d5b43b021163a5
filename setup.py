"""Maps the repository's folders onto the single ``brokermesh`` import tree.

The layout keeps contracts, generated code, the shared runtime and the
services in folders of their own, while every import name stays under
``brokermesh.``: ``mesh/`` installs as ``brokermesh.mesh``, ``services/`` as
``brokermesh.services`` and ``gen/python/brokermesh/<domain>`` as
``brokermesh.<domain>``.
"""

from pathlib import Path

from setuptools import find_namespace_packages, setup

ROOTS = {
    "brokermesh": "src/brokermesh",
    "brokermesh.mesh": "mesh",
    "brokermesh.services": "services",
}
GENERATED = Path("gen/python/brokermesh")
#: Generated code of vendored third-party contracts, kept under a private name.
VENDORED = {"brokermesh._buf": Path("gen/python/buf")}


def _packages() -> tuple[list[str], dict[str, str]]:
    roots = dict(ROOTS)
    roots.update({name: str(folder) for name, folder in VENDORED.items() if folder.is_dir()})
    domains = (
        sorted(p.name for p in GENERATED.iterdir() if p.is_dir()) if GENERATED.is_dir() else []
    )
    for domain in domains:
        roots[f"brokermesh.{domain}"] = f"{GENERATED}/{domain}"

    packages: list[str] = []
    package_dir: dict[str, str] = {}
    for name, folder in roots.items():
        packages.append(name)
        package_dir[name] = folder
        for sub in find_namespace_packages(folder, exclude=["*__pycache__*"]):
            packages.append(f"{name}.{sub}")
    return packages, package_dir


packages, package_dir = _packages()
setup(
    packages=packages,
    package_dir=package_dir,
    package_data={"": ["*.pyi", "py.typed", "*.csv", "*.sql"]},
)
