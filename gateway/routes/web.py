"""GET /: the page for adoption staff, and the few static files it loads.

Everything the page needs is served from here (deployments may have no internet, so no CDN).
Only the files named in `ASSETS` are served: no path from a request ever reaches the disk.
"""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse, Response

from gateway.errors import error_body

WEB_DIR = Path(__file__).resolve().parents[1] / "web"

# File name -> media type; the page's whole front end.
ASSETS = {
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "messages.js": "text/javascript; charset=utf-8",
    "photos.js": "text/javascript; charset=utf-8",
    "results.js": "text/javascript; charset=utf-8",
}

# The page runs only its own files; photos are shown from blob: URLs made in the browser.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Revalidate on every load (ETag), so a deploy never leaves an old script running.
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> FileResponse:
    """The page: drop photos, see cat or dog, follow bulk jobs, correct mistakes."""
    return FileResponse(
        WEB_DIR / "index.html", media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS
    )


@router.get("/web/{name}")
async def asset(name: str) -> Response:
    """One of the page's scripts or its style sheet."""
    media_type = ASSETS.get(name)
    if media_type is None:
        return JSONResponse(error_body(f"no such file: {name}", "not_found"), status_code=404)
    return FileResponse(WEB_DIR / name, media_type=media_type, headers=_PAGE_HEADERS)
