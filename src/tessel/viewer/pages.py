"""The built viewer (viewer/ -> `make viewer` -> ./static) served under /viewer/.

Hashed assets (/viewer/assets/...) are cached for a year; pages are revalidated on
every load so a rebuilt viewer shows at once. When the viewer has not been built,
/viewer/ answers 404 with the one command that builds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

STATIC_DIR = Path(__file__).resolve().parent / "static"
BUILD_HINT = "run `make viewer` in the tessel source tree to build it"
_IMMUTABLE = "public, max-age=31536000, immutable"


def is_built(static_dir: Path = STATIC_DIR) -> bool:
    return (static_dir / "index.html").is_file()


class ViewerFiles(StaticFiles):
    """StaticFiles with cache headers that suit Vite's content-hashed output."""

    def file_response(self, full_path: Any, stat_result: Any, scope: Scope, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        if "/assets/" in str(full_path):
            response.headers["Cache-Control"] = _IMMUTABLE
        else:
            response.headers["Cache-Control"] = "no-cache"
        return response


class NotBuilt:
    """What /viewer/ answers when the viewer was never built."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = ("<!doctype html><title>tessel viewer</title><h1>The tessel viewer is not built</h1>"
                f"<p>To use it, {BUILD_HINT.replace('`make viewer`', '<code>make viewer</code>')}, "
                "then reload this page.</p>")
        await HTMLResponse(body, status_code=404)(scope, receive, send)


def viewer_app(static_dir: Path = STATIC_DIR) -> Any:
    """The ASGI app mounted at /viewer: the built files, or the page that says how to build them."""
    if is_built(static_dir):
        return ViewerFiles(directory=static_dir, html=True)
    return NotBuilt()
