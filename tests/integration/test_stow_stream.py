"""STOW-RS streams: a 300 MB upload is written through to disk without the server holding it
in memory, and a SIGTERM during an upload lets it finish (graceful shutdown)."""
from __future__ import annotations

import io
import signal
import threading
import time

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from conftest import Server
from dicomweb_util import part10

BOUNDARY = "stream-boundary-7d3f"


def big_instance_header(pixel_bytes: int) -> tuple[bytes, str]:
    """Part-10 bytes of a secondary-capture-like instance up to the Pixel Data value; the
    caller streams `pixel_bytes` of pixel values after it."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "BIG1"
    ds.PatientName = "Big^Upload"
    ds.Modality = "OT"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.Columns = 1000
    ds.Rows = 1000
    ds.NumberOfFrames = pixel_bytes // 1_000_000
    # Pixel Data (7FE0,0010) OB, explicit VR with 4-byte length
    head = part10(ds) + b"\xe0\x7f\x10\x00OB\x00\x00" + pixel_bytes.to_bytes(4, "little")
    return head, str(ds.SOPInstanceUID)


def body_stream(head: bytes, pixel_bytes: int, pause_after: int | None = None,
                pause_event: threading.Event | None = None, pause_s: float = 0.0):
    yield (f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n").encode()
    yield head
    chunk = bytes(range(256)) * 4096  # 1 MiB
    sent = 0
    while sent < pixel_bytes:
        n = min(len(chunk), pixel_bytes - sent)
        yield chunk[:n]
        sent += n
        if pause_after is not None and sent >= pause_after and pause_event is not None \
                and not pause_event.is_set():
            pause_event.set()
            time.sleep(pause_s)
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def peak_rss_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return -1.0


def test_large_upload_is_streamed(tmp_path):
    srv = Server(tmp_path)
    srv.start()
    try:
        size = 300 * 1000 * 1000
        head, uid = big_instance_header(size)
        s = srv.session()
        r = s.post(f"{srv.dicomweb}/studies", data=body_stream(head, size),
                   headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'})
        assert r.status_code == 200, r.text
        assert r.json()["00081199"]["Value"][0]["00081155"]["Value"][0] == uid
        rss = peak_rss_mib(srv.proc.pid)
        assert rss < 200, f"server peak RSS {rss:.0f} MiB for a 300 MB upload"
        srv.assert_verify_clean(expect_objects=1)
    finally:
        srv.stop()


def test_sigterm_lets_an_upload_in_flight_finish(tmp_path):
    srv = Server(tmp_path)
    srv.start()
    size = 40 * 1000 * 1000
    head, uid = big_instance_header(size)
    s = srv.session()
    paused = threading.Event()
    result = {}

    def upload():
        try:
            result["r"] = s.post(
                f"{srv.dicomweb}/studies",
                data=body_stream(head, size, pause_after=10_000_000, pause_event=paused,
                                 pause_s=1.5),
                headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'})
        except Exception as e:  # noqa: BLE001
            result["e"] = e

    t = threading.Thread(target=upload)
    t.start()
    assert paused.wait(30)
    srv.proc.send_signal(signal.SIGTERM)
    t.join(60)
    rc = srv.proc.wait(60)
    assert "e" not in result, result.get("e")
    assert result["r"].status_code == 200, result["r"].text
    assert rc == 0
    srv.start()
    try:
        q = srv.session().get(f"{srv.dicomweb}/instances", params={"SOPInstanceUID": uid})
        assert len(q.json()) == 1
        srv.assert_verify_clean(expect_objects=1)
    finally:
        srv.stop()


def _instance(study: str | None = None, sop: str | None = None) -> bytes:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = sop or generate_uid()
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "P-STOW"
    ds.PatientName = "Stow^Checks"
    ds.Modality = "OT"
    raw = bytearray(part10(ds))
    raw[:4] = b"MZ\x90\x00"  # a preamble that would make the file an executable too
    return bytes(raw)


def test_store_into_a_study_never_touches_another_study_even_with_overwrite(tmp_path):
    from dicomweb_util import stow
    srv = Server(tmp_path, extra_config='duplicate_policy = "overwrite"\n')
    # the policy is a top-level key: put it before the tables
    srv.config_path.write_text('duplicate_policy = "overwrite"\n' +
                               srv.config_path.read_text().replace(
                                   'duplicate_policy = "overwrite"\n', ""))
    srv.start()
    try:
        s = srv.session()
        first = _instance()
        r = stow(s, srv.dicomweb, [first])
        assert r.status_code == 200, r.text
        sop = pydicom.dcmread(io.BytesIO(first)).SOPInstanceUID
        target = str(generate_uid())
        # same SOP Instance UID, another study, sent to /studies/{target}: refused before
        # it can replace the stored copy
        intruder = _instance(study=str(generate_uid()), sop=str(sop))
        r = stow(s, srv.dicomweb, [intruder], study=target)
        assert r.status_code == 409, r.text
        got = s.get(f"{srv.dicomweb}/studies/{pydicom.dcmread(io.BytesIO(first)).StudyInstanceUID}"
                    f"/series/{pydicom.dcmread(io.BytesIO(first)).SeriesInstanceUID}"
                    f"/instances/{sop}", headers={"Accept": 'multipart/related; type="application/dicom"'})
        assert got.status_code == 200
        from dicomweb_util import split_multipart
        (_, body), = split_multipart(got.content, got.headers["Content-Type"])
        assert body[128:] == first[128:], "the stored instance was replaced"
        assert body[:128] == bytes(128), "the preamble is stored zeroed"
    finally:
        srv.stop()


def test_over_size_stow_is_413(tmp_path):
    from dicomweb_util import stow
    srv = Server(tmp_path, extra_config="")
    srv.config_path.write_text(srv.config_path.read_text().replace(
        "[[tenants]]", "[http]\nmax_stow_bytes = 4096\n\n[[tenants]]", 1))
    srv.start()
    try:
        s = srv.session()
        # announced too large: refused before a byte is read
        r = stow(s, srv.dicomweb, [_instance() for _ in range(20)])
        assert r.status_code == 413, r.text
        assert r.headers["Content-Type"] == "application/problem+json"
        # streamed (chunked, no Content-Length): cut at the limit, still 413

        from dicomweb_util import multipart_body
        body, ctype = multipart_body([_instance() for _ in range(20)])

        def chunks():
            for i in range(0, len(body), 1000):
                yield body[i:i + 1000]
        r = s.post(f"{srv.dicomweb}/studies", data=chunks(),
                   headers={"Content-Type": ctype, "Accept": "application/dicom+json"})
        assert r.status_code == 413, r.text
        assert srv.is_running()
    finally:
        srv.stop()
