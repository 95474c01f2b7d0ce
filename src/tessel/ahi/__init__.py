"""The AWS HealthImaging-compatible API (botocore `medical-imaging`), at the root of the HTTP app."""

from tessel.ahi.routes import build_router, frame_route, install

__all__ = ["build_router", "frame_route", "install"]
