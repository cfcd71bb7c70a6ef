"""The web page at /ui: static HTML, CSS and ES modules shipped in the package and served by this app (no CDN, no
build step). The page holds no data and no key: it signs in with an API key kept in sessionStorage and calls the JSON
API with it in a header, so the routes here need no auth and import nothing heavy."""

from __future__ import annotations

from importlib import resources
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from video_ai.domain.errors import NotFound

router = APIRouter(include_in_schema=False)

# No inline script or style anywhere: every script is a file from 'self'. Media may come from the job's own URL (any
# http(s) origin the user submitted) or a presigned S3 URL; thumbnails are blob: URLs made from fetched bytes; uploads
# go straight to S3 (moto's endpoint under `serve`), the one origin besides 'self' the page may send to.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; media-src 'self' http: https:; "
       "connect-src 'self' {s3}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    # Revalidate every load: the files change with the package, and they are small.
    "Cache-Control": "no-cache",
}
ASSETS = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}


def _s3_origin(request: Request) -> str:
    endpoint = getattr(request.app.state.ctx.settings.aws, "endpoint_url", None)
    if not endpoint:
        return "https://*.amazonaws.com"
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


def _asset(name: str, request: Request) -> Response:
    if name not in ASSETS:
        raise NotFound(f"no page asset {name[:64]}")
    body = resources.files("video_ai.api").joinpath("ui", name).read_bytes()
    headers = {**SECURITY_HEADERS, "Content-Security-Policy": CSP.format(s3=_s3_origin(request))}
    return Response(body, media_type=ASSETS[name], headers=headers)


@router.get("/ui")
def page_root() -> Response:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui/")
def page(request: Request) -> Response:
    return _asset("index.html", request)


@router.get("/ui/{name}")
def page_asset(name: str, request: Request) -> Response:
    return _asset(name, request)
