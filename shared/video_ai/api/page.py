"""The web page at /ui: static HTML, CSS and ES modules shipped in the package and served by this app (no CDN, no
build step). The page holds no data and no key: it signs in with an API key kept in sessionStorage and calls the JSON
API with it in a header, so the routes here need no auth and import nothing heavy."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from video_ai.domain.errors import NotFound

router = APIRouter(include_in_schema=False)

# No inline script or style anywhere: every script is a file from 'self'. Media may come from the job's own URL (any
# http(s) origin the user submitted) or a presigned S3 URL; thumbnails are blob: URLs made from fetched bytes.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; media-src 'self' http: https:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    # Revalidate every load: the files change with the package, and they are small.
    "Cache-Control": "no-cache",
}
ASSETS = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}


def _asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFound(f"no page asset {name[:64]}")
    body = resources.files("video_ai.api").joinpath("ui", name).read_bytes()
    return Response(body, media_type=ASSETS[name], headers=SECURITY_HEADERS)


@router.get("/ui")
def page_root() -> Response:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui/")
def page() -> Response:
    return _asset("index.html")


@router.get("/ui/{name}")
def page_asset(name: str) -> Response:
    return _asset(name)
