"""The sample studies of `make demo`: one of each kind tessel serves, made on the spot.

Small enough to generate and import in seconds, real enough to look at: a CT and an
MR series, a chest radiograph, a colour ultrasound clip and a whole-slide pyramid,
for patients whose names are written in five different character sets.
"""

from __future__ import annotations

from pathlib import Path

from tessel.demo.iod import Patient, output_dir
from tessel.demo.synthetic import (
    write_ct_series,
    write_mr_series,
    write_radiograph,
    write_us_clip,
    write_wsi_pyramid,
)

# One patient per kind, so the study browser shows each character set once.
DEMO_PATIENTS = {
    "ct": Patient("Müller^Jürgen", "DEMO-DE-001", "ISO_IR 100", "19580214", "M"),
    "mr": Patient(
        "Yamada^Tarou=山田^太郎=やまだ^たろう", "DEMO-JP-001", ("", "ISO 2022 IR 87"), "19720509", "M"
    ),
    "dx": Patient("Hong^Gildong=洪^吉洞=홍^길동", "DEMO-KR-001", ("", "ISO 2022 IR 149"), "19650830", "M"),
    "us": Patient("Wang^XiaoDong=王^小東", "DEMO-CN-001", "GB18030", "19880117", "M"),
    "sm": Patient("Παπαδοπούλου^Ελένη", "DEMO-GR-001", "ISO_IR 126", "19790321", "F"),
}


def generate_demo(out_dir: Path | str) -> list[Path]:
    """Write the demo instances under `out_dir` (ct/, mr/, dx/, us/, sm/); same bytes every run."""
    out = output_dir(out_dir)
    paths = write_ct_series(out / "ct", slices=64, size=512, seed=1, patient=DEMO_PATIENTS["ct"])
    paths += write_mr_series(out / "mr", slices=24, size=256, seed=2, patient=DEMO_PATIENTS["mr"])
    paths += write_radiograph(out / "dx", size=1024, seed=3, patient=DEMO_PATIENTS["dx"])
    paths += write_us_clip(out / "us", frames=20, rows=240, columns=320, seed=4, patient=DEMO_PATIENTS["us"])
    paths += write_wsi_pyramid(
        out / "sm", base_width=4096, base_height=3072, levels=4, seed=5, patient=DEMO_PATIENTS["sm"]
    )
    return paths
