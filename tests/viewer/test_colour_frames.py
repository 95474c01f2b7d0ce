"""Colour frames re-encoded to HTJ2K use the reversible colour transform and say so (YBR_RCT).

Browser decoders (the viewer's, OHIF's) read the metadata's Photometric Interpretation next
to the stored Transfer Syntax UID; test_browser.py checks the decoded colours in Chromium.
"""

from __future__ import annotations

import struct

from tests.viewer.conftest import ViewerServer

AS_STORED = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


def cod_uses_rct(codestream: bytes) -> bool:
    """Whether a J2K/HTJ2K codestream's COD marker segment turns the multiple component transform on."""
    assert codestream[:2] == b"\xff\x4f", "a codestream starts with SOC"
    at = 2
    while at + 4 <= len(codestream):
        marker, length = struct.unpack(">HH", codestream[at:at + 4])
        if marker == 0xFF52:  # COD: Lcod, Scod, then SGcod = progression (1), layers (2), MCT (1)
            return codestream[at + 4 + 1 + 1 + 2] == 1
        at += 2 + length
    raise AssertionError("no COD marker segment")


def test_colour_htj2k_frames_use_rct_and_are_labelled_ybr_rct(viewer_server: ViewerServer) -> None:
    us = viewer_server.us
    base = f"/datastore/{viewer_server.datastore_id}/studies/{us.study}/series/{us.series}"
    with viewer_server.http() as http:
        (meta,) = http.get(f"{base}/metadata").json()
        stored = meta["00020010"]["Value"][0]
        assert stored.startswith("1.2.840.10008.1.2.4.20"), "re-encoded to HTJ2K"
        assert meta["00280004"]["Value"] == ["YBR_RCT"]
        assert meta["00280002"]["Value"] == [3]

        frame = http.get(f"{base}/instances/{us.sops[0]}/frames/1", headers={"Accept": AS_STORED})
        assert frame.status_code == 200
        boundary = frame.headers["content-type"].split("boundary=")[1].split(";")[0].strip('"')
        head, _, rest = frame.content.partition(b"\r\n\r\n")
        assert f"Content-Type: application/octet-stream; transfer-syntax={stored}".encode() in head
        codestream = rest[:rest.rindex(f"\r\n--{boundary}--".encode())]
        assert cod_uses_rct(codestream)

        # Decoded on the server, the same frame is plain RGB again.
        native = http.get(f"{base}/instances/{us.sops[0]}/frames/1",
                          headers={"Accept": 'multipart/related; type="application/octet-stream"; '
                                             "transfer-syntax=1.2.840.10008.1.2.1"})
        assert native.status_code == 200 and b"transfer-syntax=1.2.840.10008.1.2.1" in native.content[:300]


def test_grayscale_frames_keep_their_photometric_interpretation(viewer_server: ViewerServer) -> None:
    ct = viewer_server.ct
    with viewer_server.http() as http:
        meta = http.get(f"/datastore/{viewer_server.datastore_id}/studies/{ct.study}/series/{ct.series}"
                        "/metadata").json()
    assert {m["00280004"]["Value"][0] for m in meta} == {"MONOCHROME2"}
