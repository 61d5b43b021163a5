"""Fixtures: every kustomize target rendered once per session."""

from __future__ import annotations

import pytest

from .render import TARGETS, Obj, RenderError, load, render


@pytest.fixture(scope="session")
def rendered_text() -> dict[str, str]:
    """The YAML each target renders to, by target name (dev, prod, istio)."""
    try:
        return {name: render(path) for name, path in TARGETS.items()}
    except RenderError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def rendered(rendered_text: dict[str, str]) -> dict[str, list[Obj]]:
    """The objects each target renders to, by target name."""
    return {name: load(text) for name, text in rendered_text.items()}
