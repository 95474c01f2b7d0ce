"""DIMSE front end: C-ECHO, C-STORE, C-FIND, C-GET, C-MOVE and Storage Commitment on the DICOM port.

    server = DimseServer(stores, settings)   # AE title settings.ae_title
    server.start()                           # listens on settings.host:settings.dicom_port
    ...
    server.stop()

`peers` is the AE registry (`tessel ae ...`), `access` the calling-AE policy, `status` the
one TesselError -> DIMSE status table. C-STOREs go to ingest.received.StoreQueue (spooled,
answered, then staged and committed through the server's ingest writer, as STOW-RS is).
"""

from tessel.dimse.server import DimseServer, start_server

__all__ = ["DimseServer", "start_server"]
