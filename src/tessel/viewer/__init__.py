"""The web viewer: its built pages under /viewer/ and its JSON API under /viewer/api/.

`install(app)` adds both (after DICOMweb, whose token signer and keys it shares);
`status_line(base_url)` is what `tessel serve` prints about it.
"""

from __future__ import annotations

from fastapi import FastAPI

from tessel.viewer.api import build_router
from tessel.viewer.pages import BUILD_HINT, is_built, viewer_app

__all__ = ["BUILD_HINT", "install", "is_built", "status_line"]


def install(app: FastAPI) -> None:
    app.include_router(build_router())
    app.mount("/viewer", viewer_app(), name="viewer")


def status_line(base_url: str) -> str:
    if is_built():
        return f"viewer: {base_url}/viewer/ (sign in with an access key, or a token from `tessel token create`)"
    return f"viewer: not built; {BUILD_HINT}"
