"""`tessel import`: run an import job in this process with a progress bar, then summarise."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn)

from tessel.config import Settings
from tessel.errors import InvalidInput
from tessel.ingest import jobs
from tessel.lifecycle.datastores import find_or_create
from tessel.stores import open_stores


SHOWN_FAILURES = 20  # the rest are in the job's FAILURE/failure.ndjson


def import_path(settings: Settings, path: Path, datastore: str, *,
                console: Console | None = None) -> jobs.JobSummary:
    console = console or Console(stderr=True, soft_wrap=True)  # paths stay whole, even on a pipe
    if not path.exists():
        raise InvalidInput(f"{path} does not exist")
    stores = open_stores(settings)
    try:
        ds = find_or_create(stores, datastore)
        source = path.resolve().as_uri()
        # A job for the same source that did not finish (killed, crashed) is resumed, not repeated.
        job = next((j for j in jobs.unfinished_jobs(stores)
                    if j.datastore_id == ds.id and j.input_uri == source), None)
        if job is not None:
            console.print(f"resuming import job {job.id}")
        else:
            output = (settings.data_dir / "imports" / "results").resolve().as_uri()
            job = jobs.start_import_job(stores, ds.id, source, output)
        started = time.monotonic()
        with Progress(TextColumn("[bold]importing"), BarColumn(), MofNCompleteColumn(),
                      TaskProgressColumn(), TextColumn("{task.fields[mb]}"), TimeElapsedColumn(),
                      console=console, transient=False) as bar:
            task = bar.add_task("import", total=None, mb="")

            def on_progress(p: jobs.JobProgress) -> None:
                elapsed = max(time.monotonic() - started, 1e-6)
                bar.update(task, total=p.files_total, completed=p.files_done,
                           mb=f"{_size(p.bytes_done)}/{_size(p.bytes_total)} "
                              f"({_size(p.bytes_done / elapsed)}/s), {p.files_failed} failed")

            summary = jobs.run_import_job(stores, job.id, progress=on_progress)
        elapsed = time.monotonic() - started
        sets = len(summary.image_sets)
        console.print(f"datastore {ds.name} ({ds.id}): {summary.imported} of {summary.scanned} files "
                      f"imported into {sets} image set{'' if sets == 1 else 's'}, {summary.failed} failed, "
                      f"in {elapsed:.1f} s")
        failures = _failures(summary)
        for line in failures[:SHOWN_FAILURES]:
            console.print(f"  [red]failed[/red] {escape(line)}", highlight=False)  # names may hold [brackets]
        if len(failures) > SHOWN_FAILURES:
            console.print(f"  ... and {len(failures) - SHOWN_FAILURES} more failures: see FAILURE/failure.ndjson")
        console.print(f"manifest: {summary.output_uri}job-output-manifest.json")
        return summary
    finally:
        stores.close()


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _failures(summary: jobs.JobSummary) -> list[str]:
    import json
    from urllib.parse import unquote, urlparse

    path = Path(unquote(urlparse(summary.output_uri).path)) / "FAILURE" / "failure.ndjson"
    lines = []
    for raw in path.read_text().splitlines():
        entry = json.loads(raw)
        lines.append(f"{entry['inputFile']}: {entry['exception']['message']}")
    return lines
