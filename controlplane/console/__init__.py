"""The web console: a single page served on the REST gateway's port under
/console/, which talks to the same REST API a script would (/api/v1/...), with
the bearer token the user signs in with. It therefore has exactly the API's
authentication and tenant scoping, and nothing of its own to keep in step.

The page is rendered in the browser with Preact through htm (tagged templates,
no build step), from the npm package pinned in package.json; scripts/bootstrap
copies its one module into static/vendor/. Everything is served from this
package: nothing is fetched from the network at build or run time. A strict
Content-Security-Policy allows only this origin's scripts, styles and API.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"
VENDOR_MODULE = STATIC / "vendor" / "preact-htm.js"
PREFIX = "/console"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class ConsoleAssetsMissing(OSError):
    """The vendored UI module is not in the package (scripts/bootstrap copies it)."""


def routes() -> list[web.AbstractRouteDef]:
    """The console's routes, to be added ahead of the gateway's catch-all."""
    if not VENDOR_MODULE.is_file():
        raise ConsoleAssetsMissing(
            f"the web console's UI module is missing ({VENDOR_MODULE}); run scripts/bootstrap, "
            "or start the control plane with --no-console"
        )
    return [
        web.get(PREFIX, _to_index),
        web.get(f"{PREFIX}/", _index),
        web.static(f"{PREFIX}/static", STATIC, follow_symlinks=False),
    ]


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Every console response carries the security headers."""
    if request.path == PREFIX or request.path.startswith(f"{PREFIX}/"):
        response.headers.update(SECURITY_HEADERS)


async def _to_index(_request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(f"{PREFIX}/")


async def _index(_request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Content-Type": "text/html"})
