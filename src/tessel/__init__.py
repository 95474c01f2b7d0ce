"""tessel: a self-hosted medical imaging store.

DICOM Part 10 files become image sets with versioned metadata documents and
individually addressable, losslessly recompressed frames.
"""

__version__ = "0.1.0"
