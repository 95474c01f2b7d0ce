"""`tessel demo` (make demo): generate the sample studies, import them, serve."""

from __future__ import annotations

from rich.console import Console

from tessel.config import Settings


def run_demo(settings: Settings, *, serve_after: bool) -> int:
    from tessel.cli.importing import import_path
    from tessel.demo.generate import generate_demo

    console = Console(stderr=True)
    samples = (settings.data_dir / "imports" / "demo").resolve()
    marker = samples.parent / ".demo-generated"
    if not marker.exists():
        console.print(f"generating sample studies in {samples}")
        generate_demo(samples)
        marker.touch()
    summary = import_path(settings, samples, "demo", console=console)
    console.print(f"{summary.imported} sample instances in {len(summary.image_sets)} image sets")
    if not serve_after:
        return 0
    from tessel.app import serve

    base = f"http://{settings.host}:{settings.port}"
    console.print(f"health:  {base}/healthz\nAHI API: {base}/ (boto3 medical-imaging, endpoint_url={base})")
    serve(settings, sign_in_link=True)
    return 0
