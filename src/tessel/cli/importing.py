"""`tessel import`: run an import job in this process with a progress bar, then summarise."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn)

from tessel.config import Settings
from tessel.errors import InvalidInput
from tessel.ingest import jobs
from tessel.lifecycle.datastores import find_or_create
from tessel.stores import open_stores


def import_path(settings: Settings, path: Path, datastore: str, *,
                console: Console | None = None) -> jobs.JobSummary:
    console = console or Console(stderr=True)
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
                           mb=f"{p.bytes_done / 1e6:,.1f}/{p.bytes_total / 1e6:,.1f} MB "
                              f"({p.bytes_done / 1e6 / elapsed:,.1f} MB/s), {p.files_failed} failed")

            summary = jobs.run_import_job(stores, job.id, progress=on_progress)
        elapsed = time.monotonic() - started
        console.print(f"datastore {ds.name} ({ds.id}): {summary.imported} of {summary.scanned} files "
                      f"imported into {len(summary.image_sets)} image sets, {summary.failed} failed, "
                      f"in {elapsed:.1f} s")
        for line in _failures(summary)[:20]:
            console.print(f"  [red]failed[/red] {line}")
        console.print(f"manifest: {summary.output_uri}job-output-manifest.json")
        return summary
    finally:
        stores.close()


def _failures(summary: jobs.JobSummary) -> list[str]:
    import json
    from urllib.parse import unquote, urlparse

    path = Path(unquote(urlparse(summary.output_uri).path)) / "FAILURE" / "failure.ndjson"
    lines = []
    for raw in path.read_text().splitlines():
        entry = json.loads(raw)
        lines.append(f"{entry['inputFile']}: {entry['exception']['message']}")
    return lines
