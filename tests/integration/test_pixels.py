"""The pydicom corpus over DICOMweb: STOW-RS in, WADO-RS out byte-identical; every frame of
every compressed syntax decoded by the server (/frames as application/octet-stream) compared
with pydicom's decoding (pixel-exact for lossless syntaxes); transcoding, rendered images,
thumbnails and WADO-URI."""
from __future__ import annotations

import io
import struct
import warnings
from collections import defaultdict

import numpy as np
import pydicom
import pytest
from pydicom.pixels import pixel_array

from conftest import Server, run_radris
from dicomweb_util import split_multipart, stow
from test_corpus import JPEGLS_NEAR_LOSSLESS, TRUNCATED, collect

LOSSLESS = {
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
}
OCTET = 'multipart/related; type="application/octet-stream"'


@pytest.fixture(scope="module")
def corpus_server(tmp_path_factory):
    """Every corpus file stored over STOW-RS. Files that share a SOP Instance UID (pydicom
    ships one image in many syntaxes) go to tenants of their own, so each is kept."""
    srv = Server(tmp_path_factory.mktemp("px"))
    srv.start()
    items, _ = collect()
    sessions = {}
    seen = defaultdict(int)
    outcomes, stored = {}, []
    for it in items:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            key = str(pydicom.dcmread(it.path, stop_before_pixels=True).SOPInstanceUID)
        k = seen[key]
        seen[key] += 1
        tenant = "default" if k == 0 else f"dup{k}"
        if tenant not in sessions:
            sessions[tenant] = srv.session(tenant=tenant)
        it.session = sessions[tenant]
        r = stow(it.session, srv.dicomweb, [it.path])
        outcomes[it.name] = r
        if r.status_code == 200:
            # where the server filed it (a data set with unusable UIDs is filed under derived
            # ones): the RetrieveURL of the stored instance
            url = r.json()["00081199"]["Value"][0]["00081190"]["Value"][0]
            it.url = srv.dicomweb + url.split("/dicom-web", 1)[1]
            stored.append(it)
    yield srv, items, outcomes, stored
    srv.stop()


def test_corpus_stow_accepts_what_dimse_accepts(corpus_server):
    srv, items, outcomes, stored = corpus_server
    accepted = [n for n, r in outcomes.items() if r.status_code == 200]
    by_name = {i.name: i for i in items}
    refused = {n: r for n, r in outcomes.items() if r.status_code != 200}
    # the truncated RT Plan is refused cleanly with a failure reason; the JPEG-LS
    # near-lossless files (which Orthanc refuses) are accepted
    assert TRUNCATED in refused
    assert refused[TRUNCATED].status_code == 409
    assert refused[TRUNCATED].json()["00081198"]["Value"][0]["00081197"]["Value"][0] in (0xC000, 0xA900)
    near = [n for n in accepted if by_name[n].ts == JPEGLS_NEAR_LOSSLESS]
    assert len(near) == 4, near
    assert len(accepted) >= 66, sorted(refused)
    # an undefined-length UN element is refused before the parser sees it: the parser
    # would misread it into a multi-gigabyte allocation
    from test_corpus import CORPUS
    r = stow(srv.session(), srv.dicomweb, [CORPUS / "UN_sequence.dcm"])
    assert r.status_code == 409
    assert "undefined-length UN" in r.text
    hwm = [l for l in open(f"/proc/{srv.proc.pid}/status") if l.startswith("VmHWM")][0]
    assert int(hwm.split()[1]) < 400 * 1024, hwm


def test_corpus_wado_byte_identical(corpus_server):
    srv, items, outcomes, stored = corpus_server
    checked = 0
    for it in stored:
        s = it.session
        r = s.get(it.url, headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
        assert r.status_code == 200, (it.name, r.text[:200])
        parts = split_multipart(r.content, r.headers["Content-Type"])
        sent = it.path.read_bytes()
        # the file that was sent, with the preamble zeroed (a preamble can make the file a
        # valid TIFF or executable too: CT_small.dcm carries a TIFF header there); a file
        # without preamble gets a zero one
        got = parts[0][1]
        assert got[:128] == b"\0" * 128, it.name
        assert got[128:] in (sent[128:], sent), it.name
        checked += 1
    assert checked >= 60


def reference_frames(path) -> list[np.ndarray] | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        out = []
        for raw in (False, True):
            try:
                arr = pixel_array(ds, raw=raw)
            except Exception:  # noqa: BLE001
                return None
            frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
            spp = int(getattr(ds, "SamplesPerPixel", 1) or 1)
            if frames == 1:
                arr = arr[np.newaxis, ...]
            out.append(arr)
        return out


def test_corpus_frames_decoded_match_pydicom(corpus_server):
    srv, items, outcomes, stored = corpus_server
    exact, lossy, skipped, unsupported = defaultdict(int), defaultdict(int), [], []
    for it in stored:
        uid, s = it.sop_inst, it.session
        ds = pydicom.dcmread(it.path, stop_before_pixels=True)
        if "Rows" not in ds or it.ts in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1"):
            continue
        ref = reference_frames(it.path)
        if ref is None:
            skipped.append(it.name)
            continue
        nframes = ref[0].shape[0]
        for f in range(1, min(nframes, 3) + 1):
            r = s.get(f"{it.url}/frames/{f}", headers={"Accept": OCTET})
            if r.status_code == 422 and "unsupported" in r.text:
                unsupported.append((it.name, it.ts))
                break
            assert r.status_code == 200, (it.name, f, r.text[:300])
            body = split_multipart(r.content, r.headers["Content-Type"])[0][1]
            le = [np.ascontiguousarray(a[f - 1].astype(a.dtype.newbyteorder("<"))) for a in ref]
            candidates = [a.tobytes() for a in le]
            # native colour data with Planar Configuration 1 is delivered as stored: by plane
            candidates += [np.ascontiguousarray(np.moveaxis(a, -1, 0)).tobytes()
                           for a in le if a.ndim == 3]
            # 1-bit data (segmentations) stays packed, as DICOM encodes it
            if int(getattr(ds, "BitsAllocated", 8)) == 1:
                candidates += [np.packbits(a.ravel(), bitorder="little").tobytes() for a in le]
            if it.ts in LOSSLESS:
                assert body in candidates, (it.name, f, len(body), [len(c) for c in candidates])
                exact[it.ts] += 1
            else:
                assert len(body) in [len(c) for c in candidates], (it.name, f)
                lossy[it.ts] += 1
    print("pixel-exact frames per syntax:", dict(exact))
    print("lossy frames (size checked):", dict(lossy))
    print("not decodable by pydicom here:", skipped)
    print("not decodable by RADRIS (codec limitation, a clear 422):", unsupported)
    # dicom-rs's JPEG decoder has no 12-bit (extended) support; nothing else may fail
    assert {ts for _, ts in unsupported} <= {"1.2.840.10008.1.2.4.51"}, unsupported
    # every lossless compressed family of the corpus is covered
    for ts in ("1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80",
               "1.2.840.10008.1.2.4.90"):
        assert exact[ts] > 0, (ts, dict(exact))


def test_frames_as_stored_and_errors(corpus_server):
    srv, items, outcomes, stored = corpus_server
    jls = next(it for it in stored if it.ts == "1.2.840.10008.1.2.4.80" and it.study)
    s = jls.session
    base = jls.url
    r = s.get(f"{base}/frames/1", headers={"Accept": 'multipart/related; type="image/jls"'})
    assert r.status_code == 200
    (h, body), = split_multipart(r.content, r.headers["Content-Type"])
    assert h["content-type"].startswith("image/jls")
    assert body[:2] == b"\xff\xd8"  # JPEG-LS SOI marker
    for url, status in [(f"{base}/frames/999", 404), (f"{base}/frames/0", 400),
                        (f"{base}/frames/a,b", 400), (f"{base}/frames/1", 406)]:
        hdr = {"Accept": 'multipart/related; type="image/jp2"'} if status == 406 else {"Accept": OCTET}
        r = s.get(url, headers=hdr)
        assert r.status_code == status, (url, r.status_code, r.text)
        assert r.headers["Content-Type"] == "application/problem+json"


def test_transcode_to_explicit_le(corpus_server):
    srv, items, outcomes, stored = corpus_server
    for ts in ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90"):
        it = next(i for i in stored if i.ts == ts and i.study)
        s = it.session
        r = s.get(it.url,
                  headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'})
        assert r.status_code == 200, (it.name, r.text[:200])
        (h, body), = split_multipart(r.content, r.headers["Content-Type"])
        assert "transfer-syntax=1.2.840.10008.1.2.1" in h["content-type"].replace('"', "")
        got = pydicom.dcmread(io.BytesIO(body))
        assert got.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        ref = reference_frames(it.path)
        if ref is not None:
            arr = got.pixel_array
            assert any(np.array_equal(arr.reshape(r_.shape), r_) for r_ in ref
                       if r_.size == arr.size), it.name
    r = s.get(it.url,
              headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.100'})
    assert r.status_code == 406


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_rendered_thumbnail_and_wado_uri(tmp_path):
    srv = Server(tmp_path / "srv")
    srv.start()
    try:
        out = tmp_path / "ct"
        run_radris("generate", "ct", "--out", out, "--slices", 5, "--rows", 256, "--cols", 256,
                   "--seed", "render", check=True)
        files = sorted(out.glob("*.dcm"))
        s = srv.session()
        assert stow(s, srv.dicomweb, files).status_code == 200
        ds = pydicom.dcmread(files[2])
        st, se, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
        base = f"{srv.dicomweb}/studies/{st}/series/{se}/instances/{sop}"
        r = s.get(f"{base}/rendered", headers={"Accept": "image/png"},
                  params={"window": "40,400", "viewport": "128,64"})
        assert r.status_code == 200 and r.headers["Content-Type"] == "image/png"
        assert png_size(r.content) == (64, 64)
        r = s.get(f"{base}/rendered", params={"quality": 50})
        assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
        # the window changes the image: lung vs bone windows differ
        a = s.get(f"{base}/rendered", headers={"Accept": "image/png"}, params={"window": "-600,1500"}).content
        b = s.get(f"{base}/rendered", headers={"Accept": "image/png"}, params={"window": "400,1800"}).content
        assert a != b
        r = s.get(f"{base}/frames/1/rendered", headers={"Accept": "image/png"})
        assert png_size(r.content) == (256, 256)
        for url in (f"{base}/thumbnail", f"{srv.dicomweb}/studies/{st}/series/{se}/thumbnail",
                    f"{srv.dicomweb}/studies/{st}/thumbnail"):
            r = s.get(url, headers={"Accept": "image/png"})
            assert r.status_code == 200, (url, r.text)
            assert max(png_size(r.content)) == 128
        for params, status in [({"window": "40"}, 400), ({"window": "40,-1"}, 400),
                               ({"viewport": "0,10"}, 400), ({"quality": 101}, 400),
                               ({"bogus": 1}, 400)]:
            assert s.get(f"{base}/rendered", params=params).status_code == status, params
        assert s.get(f"{base}/rendered", headers={"Accept": "image/gif"}).status_code == 406
        # WADO-URI
        wado = f"http://127.0.0.1:{srv.http_port}/wado"
        q = {"requestType": "WADO", "studyUID": st, "seriesUID": se, "objectUID": sop}
        r = s.get(wado, params=q)
        assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
        r = s.get(wado, params={**q, "contentType": "application/dicom"})
        assert r.content == files[2].read_bytes()
        r = s.get(wado, params={**q, "contentType": "image/png", "rows": 100, "columns": 100})
        assert png_size(r.content) == (100, 100)
        assert s.get(wado, params={**q, "requestType": "X"}).status_code == 400
        assert s.get(wado, params={"requestType": "WADO"}).status_code == 400
        # another tenant gets nothing
        other = srv.session(tenant="other")
        assert other.get(f"{base}/rendered").status_code == 404
        assert other.get(wado, params=q).status_code == 404
        assert other.get(f"{base}/frames/1", headers={"Accept": OCTET}).status_code == 404
    finally:
        srv.stop()
