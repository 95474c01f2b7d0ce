"""Synthetic, deterministic DICOM for `make demo`, tests and benchmarks.

`generate_demo` writes the bundled sample studies; `synthetic` has one builder per
kind (CT, MR, radiograph, ultrasound, whole-slide pyramid, and a many-patient
radiograph set for search load). Pixels come from `phantoms` and `slide`.
"""

from tessel.demo.generate import DEMO_PATIENTS, generate_demo
from tessel.demo.iod import Patient
from tessel.demo.synthetic import (
    write_ct_series,
    write_mr_series,
    write_radiograph,
    write_radiograph_set,
    write_us_clip,
    write_wsi_pyramid,
)

__all__ = [
    "DEMO_PATIENTS",
    "Patient",
    "generate_demo",
    "write_ct_series",
    "write_mr_series",
    "write_radiograph",
    "write_radiograph_set",
    "write_us_clip",
    "write_wsi_pyramid",
]
