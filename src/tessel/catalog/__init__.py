"""The catalog port: index rows for datastores, image sets, versions, instances, frames and jobs."""

from tessel.catalog.store import Catalog

__all__ = ["Catalog"]
