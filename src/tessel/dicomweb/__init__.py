"""DICOMweb (QIDO-RS, WADO-RS, STOW-RS) under /datastore/{datastoreId}/, as AWS HealthImaging serves it.

`install(app)` adds the routes (needs app.state.stores and app.state.keys);
`cors_options(settings)` is what browsers on other origins need (CONTRACT.md).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI

from tessel.auth.tokens import TokenSigner
from tessel.config import Settings
from tessel.dicomweb.routes import build_router, frames_route
from tessel.retrieve import instances

__all__ = ["build_router", "cors_options", "frames_route", "install"]

# Headers browsers may send (Authorization for Basic/Bearer/SigV4) and read back.
ALLOWED_HEADERS = ["Authorization", "Accept", "Content-Type", "X-Amz-Date", "X-Amz-Content-Sha256",
                   "X-Amz-Security-Token", "X-Amz-Target", "X-Amz-User-Agent", "Range"]
EXPOSED_HEADERS = ["Content-Type", "Content-Length", "Content-Encoding", "Warning", "x-amzn-RequestId",
                   "x-amzn-ErrorType"]


def install(app: FastAPI, *, no_auth: bool = False) -> None:
    settings = app.state.stores.settings
    app.state.dicomweb_no_auth = no_auth
    app.state.dicomweb_tokens = TokenSigner(app.state.stores.catalog, settings.data_dir)
    instances.TRANSCODED.resize(settings.frame_cache_mb * 1024 * 1024)
    # STOW-RS stages parts here while the rest of the body is still arriving.
    app.state.dicomweb_stow_pool = ThreadPoolExecutor(max_workers=settings.resolved_workers,
                                                      thread_name_prefix="stow")
    app.include_router(build_router())


def cors_options(settings: Settings) -> dict[str, Any]:
    """Starlette CORSMiddleware options: the configured origins, no cookies (credentials are headers)."""
    origins = list(settings.cors_origins) or ["*"]
    return {"allow_origins": origins, "allow_methods": ["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD"],
            "allow_headers": ALLOWED_HEADERS, "expose_headers": EXPOSED_HEADERS, "allow_credentials": False,
            "max_age": 600}
