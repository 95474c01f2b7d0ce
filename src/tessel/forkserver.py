"""The fork server staging pools fork their workers from (import jobs, DIMSE stores).

forkserver, not fork: the parent may run threads (the server, the progress bar). The fork
server imports the staging code once and every worker is forked from it ready to go; without
the preload each worker re-imported pydicom, imagecodecs and tessel itself (seconds per job,
longer than a small import takes). One fork server runs per process and stays; the first
caller's preload list is the one it gets.

This module imports nothing of tessel's, so `tessel import` can start the fork server before
it imports the rest: the two processes then import side by side, on two cores.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver
from collections.abc import Sequence

# What an import job's workers run. "__main__" too: else every worker imports the main module
# again (the `tessel` script and what it imports) before its first file.
IMPORT_JOBS = ("__main__", "tessel.ingest.jobs")


def fork_server(preload: Sequence[str] = IMPORT_JOBS) -> multiprocessing.context.ForkServerContext:
    """The forkserver context, its server started. Starting it does not wait for its imports."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(preload))
    multiprocessing.forkserver.ensure_running()
    return context
