"""The side-by-side benchmark: one harness, any DICOM server, through DICOMweb and DIMSE only.

    python -m benchmarks.compare [--quick] [--servers tessel,orthanc]

Modules: workloads (deterministic data from tessel.demo, cached), load (keep-alive
HTTP clients in threads), scenarios (one function per figure), checks (answers are
right before they are timed), servers (start/stop tessel and Orthanc on loopback
ports, pinned to the same cores), stats and report (JSON document, markdown table).
"""
