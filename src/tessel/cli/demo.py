"""`tessel demo` (make demo): generate the sample studies, import them, serve, say where.

The samples are generated once into the data directory's imports/demo folder and
imported into the datastore "demo"; a later run finds that import done and goes
straight to serving. Once the server answers /healthz, every address a user needs is
printed: the AHI endpoint, DICOMweb per datastore, the viewer, DIMSE, and the access
key. The demo's administrator key pair is kept in the data directory
(demo-credentials.json, readable by its owner only) so that it can be shown on every
run; a real deployment prints its key once (`tessel serve`).
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
import urllib.request
from pathlib import Path

from rich.console import Console

from tessel.catalog.models import DatastoreStatus, JobStatus
from tessel.config import Secret, Settings
from tessel.stores import open_stores

DATASTORE = "demo"
CREDENTIALS_FILE = "demo-credentials.json"


def run_demo(settings: Settings, *, serve_after: bool) -> int:
    from tessel.cli.importing import import_path
    from tessel.demo.generate import generate_demo

    console = Console(stderr=True, soft_wrap=True)
    settings = _with_credentials(settings)
    samples = (settings.data_dir / "imports" / "demo").resolve()
    marker = samples.parent / ".demo-generated"
    if not marker.exists():
        console.print(f"generating sample studies in {samples}")
        started = time.monotonic()
        paths = generate_demo(samples)
        marker.touch()
        console.print(f"{len(paths)} files generated in {time.monotonic() - started:.1f} s")
    if _already_imported(settings, samples):
        console.print(f"sample studies already imported into datastore {DATASTORE!r}")
    else:
        summary = import_path(settings, samples, DATASTORE, console=console)
        console.print(f"{summary.imported} sample instances in {len(summary.image_sets)} image sets")
    if not serve_after:
        return 0
    from tessel.app import serve

    threading.Thread(target=_announce_when_ready, args=(settings,), daemon=True).start()
    try:
        serve(settings)
    except KeyboardInterrupt:  # Ctrl-C is how a demo ends: not an error for `make`
        console.print("demo stopped")
    return 0


def _with_credentials(settings: Settings) -> Settings:
    """The demo's administrator key pair: from the environment, else the data dir's file."""
    if settings.access_key_id and settings.secret_access_key:
        return settings
    path = settings.data_dir / CREDENTIALS_FILE
    if path.exists():
        stored = json.loads(path.read_text())
    else:
        # The same alphabet and lengths as AWS keys, so SDKs and the CLI accept them as they are.
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
        stored = {"AWS_ACCESS_KEY_ID": "TSLDEMO" + "".join(secrets.choice(alphabet) for _ in range(13)),
                  "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30)}
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(stored, f, indent=2)
    return settings.with_(access_key_id=stored["AWS_ACCESS_KEY_ID"],
                          secret_access_key=Secret(stored["AWS_SECRET_ACCESS_KEY"]))


def _already_imported(settings: Settings, samples: Path) -> bool:
    stores = open_stores(settings)
    try:
        ds = stores.catalog.find_datastore(name=DATASTORE)
        if ds is None or ds.status != DatastoreStatus.ACTIVE:
            return False
        return any(job.input_uri == samples.as_uri() and job.status == JobStatus.COMPLETED
                   for job in stores.catalog.list_jobs(datastore_id=ds.id))
    finally:
        stores.close()


def _announce_when_ready(settings: Settings, timeout: float = 120) -> None:
    base = f"http://{settings.host}:{settings.port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        time.sleep(0.2)
    else:
        return  # the server did not come up; it has said why
    print(banner(settings), flush=True)


def _viewer_link(settings: Settings, base: str) -> str:
    """The viewer's address, signed in as the administrator for 12 hours (the token rides in the
    fragment, which browsers never send)."""
    from tessel.auth.tokens import TokenSigner
    from tessel.catalog import Catalog
    from tessel.viewer import BUILD_HINT, is_built

    if not is_built():
        return f"not built: {BUILD_HINT}"
    assert settings.access_key_id is not None
    catalog = Catalog.open(settings.resolved_catalog_url)  # the signing key is kept there
    try:
        token = TokenSigner(catalog, settings.data_dir).create(settings.access_key_id, 12 * 3600)
    finally:
        catalog.close()
    return f"{base}/viewer/#token={token}"


def banner(settings: Settings) -> str:
    """Every address of the running demo, and the key to use them."""
    base = f"http://{settings.host}:{settings.port}"
    stores = open_stores(settings)
    try:
        datastores = [d for d in stores.catalog.list_datastores() if d.status == DatastoreStatus.ACTIVE]
    finally:
        stores.close()
    assert settings.secret_access_key is not None
    lines = ["", "tessel demo is ready.", "",
             f"  AWS HealthImaging API  {base}",
             f"      boto3.client('medical-imaging', endpoint_url='{base}', region_name='{settings.region}',",
             "                   config=botocore.config.Config(inject_host_prefix=False), ...)"]
    for ds in datastores:
        lines.append(f"  DICOMweb ({ds.name})  {base}/datastore/{ds.id}")
    lines += [f"  viewer                 {base}/viewer/",
              f"      signed in (12 h)   {_viewer_link(settings, base)}",
              f"  DIMSE                  AE title {settings.ae_title} on {settings.host} port {settings.dicom_port}",
              f"  health, metrics        {base}/healthz  {base}/metrics",
              "",
              "  access key (administrator; SigV4, or HTTP Basic id:secret for DICOMweb and the viewer)",
              f"      AWS_ACCESS_KEY_ID={settings.access_key_id}",
              f"      AWS_SECRET_ACCESS_KEY={settings.secret_access_key.reveal()}",
              "",
              "  Ctrl-C stops the server; `make demo` again serves the same data.", ""]
    return "\n".join(lines)
