"""``/docs``: Swagger UI over ``/openapi.json``, served from the swagger-ui-bundle wheel's files.

Nothing is fetched at run time: the page, its script and Swagger UI's own
assets all come from this process.
"""

from __future__ import annotations

from pathlib import Path

import swagger_ui_bundle
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

_ASSETS = "/docs/assets"

_PAGE = f"""<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>brokermesh API</title>
    <link rel="stylesheet" type="text/css" href="{_ASSETS}/swagger-ui.css">
    <link rel="icon" type="image/png" href="{_ASSETS}/favicon-32x32.png" sizes="32x32">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="{_ASSETS}/swagger-ui-bundle.js" charset="UTF-8"></script>
    <script src="{_ASSETS}/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
    <script src="/docs/init.js" charset="UTF-8"></script>
  </body>
</html>
"""

_INIT = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout",
    validatorUrl: null
  });
};
"""


def assets_dir() -> Path:
    """Folder of the Swagger UI distribution inside the installed wheel."""
    return Path(str(swagger_ui_bundle.swagger_ui_path))


def routes() -> list[BaseRoute]:
    """The page, its start-up script and the Swagger UI assets."""
    return [
        Route("/docs", _page, methods=["GET"], include_in_schema=False),
        Route("/docs/init.js", _init, methods=["GET"], include_in_schema=False),
        Mount(_ASSETS, app=StaticFiles(directory=assets_dir()), name="docs-assets"),
    ]


async def _page(request: Request) -> Response:
    return HTMLResponse(_PAGE)


async def _init(request: Request) -> Response:
    return Response(_INIT, media_type="text/javascript")
