"""DICOMweb conformance against the running server: QIDO-RS, WADO-RS, STOW-RS, with the
Python dicomweb-client and plain HTTP (requests), plus authentication and tenant isolation."""
from __future__ import annotations

import io

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from conftest import Server, run_radris
from dicomweb_util import multipart_body, split_multipart, stow


@pytest.fixture(scope="module")
def small_series(tmp_path_factory):
    out = tmp_path_factory.mktemp("ct20")
    run_radris("generate", "ct", "--out", out, "--slices", 20, "--rows", 64, "--cols", 64,
               "--seed", "dw", check=True)
    files = sorted(out.glob("*.dcm"))
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    return files, str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.PatientID)


@pytest.fixture(scope="module")
def srv(tmp_path_factory, small_series):
    s = Server(tmp_path_factory.mktemp("dw"))
    s.start()
    files, study, series, _ = small_series
    sess = s.session()
    r = stow(sess, s.dicomweb, files)
    assert r.status_code == 200, r.text
    yield s
    s.stop()


def client(srv: Server, tenant="default", scope="read,write,delete") -> DICOMwebClient:
    return DICOMwebClient(url=srv.dicomweb,
                          headers={"Authorization": f"Bearer {srv.token(tenant, scope)}"})


def test_stow_response_lists_every_instance(srv, small_series, tmp_path):
    files, study, series, _ = small_series
    # storing again is idempotent (keep-first duplicate policy) and answered per instance
    r = stow(srv.session(), srv.dicomweb, files[:3], study=study)
    assert r.status_code == 200, r.text
    body = r.json()
    refs = body["00081199"]["Value"]
    assert len(refs) == 3
    sent = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files[:3]}
    assert {x["00081155"]["Value"][0] for x in refs} == sent
    assert body["00081190"]["Value"][0].endswith(f"/studies/{study}")
    assert "00081198" not in body


def test_qido_with_dicomweb_client(srv, small_series):
    files, study, series, pid = small_series
    c = client(srv)
    studies = c.search_for_studies(search_filters={"PatientID": pid})
    assert len(studies) == 1
    st = pydicom.Dataset.from_json(studies[0])
    assert st.StudyInstanceUID == study
    assert int(st.NumberOfStudyRelatedInstances) == 20
    assert "CT" in st.ModalitiesInStudy
    assert st.RetrieveURL.endswith(f"/studies/{study}")
    sers = c.search_for_series(study_instance_uid=study)
    assert [pydicom.Dataset.from_json(x).SeriesInstanceUID for x in sers] == [series]
    insts = c.search_for_instances(study_instance_uid=study, series_instance_uid=series)
    assert len(insts) == 20
    # wildcard, range, fuzzy and no match
    name = str(pydicom.dcmread(files[0], stop_before_pixels=True).PatientName)
    assert len(c.search_for_studies(search_filters={"PatientName": name[:3].lower() + "*"})) == 1
    fuzzy = c.search_for_studies(search_filters={"PatientName": name[2:5].lower()},
                                 fuzzymatching=True)
    assert len(fuzzy) == 1
    assert c.search_for_studies(search_filters={"PatientName": name[2:5].lower()}) == []
    assert len(c.search_for_studies(search_filters={"StudyDate": "19000101-29991231"})) == 1
    assert c.search_for_studies(search_filters={"StudyDate": "19000101-19000102"}) == []
    assert c.search_for_studies(search_filters={"PatientID": "NOPE"}) == []


def test_qido_includefield_limit_offset(srv, small_series):
    files, study, series, _ = small_series
    s = srv.session()
    url = f"{srv.dicomweb}/studies/{study}/series/{series}/instances"
    r = s.get(url, params={"limit": 5, "offset": 0, "includefield": "ImagePositionPatient"})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/dicom+json")
    assert "Warning" in r.headers and "299" in r.headers["Warning"]
    page1 = r.json()
    assert len(page1) == 5 and all("00200032" in x for x in page1)
    r2 = s.get(url, params={"limit": 5, "offset": 5})
    page2 = r2.json()
    uids = lambda page: [x["00080018"]["Value"][0] for x in page]  # noqa: E731
    assert not set(uids(page1)) & set(uids(page2))
    r3 = s.get(url, params={"limit": 100})
    assert len(r3.json()) == 20 and "Warning" not in r3.headers
    everything = s.get(url, params={"includefield": "all", "limit": 1}).json()[0]
    assert "00280030" in everything  # PixelSpacing comes with includefield=all
    assert "7FE00010" not in everything


def test_wado_instance_byte_identical(srv, small_series):
    files, study, series, _ = small_series
    s = srv.session()
    for f in files[:4]:
        uid = str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
        r = s.get(f"{srv.dicomweb}/studies/{study}/series/{series}/instances/{uid}",
                  headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
        assert r.status_code == 200, r.text
        parts = split_multipart(r.content, r.headers["Content-Type"])
        assert len(parts) == 1
        assert parts[0][1] == f.read_bytes()


def test_wado_series_with_dicomweb_client(srv, small_series):
    files, study, series, _ = small_series
    c = client(srv)
    got = c.retrieve_series(study, series)
    assert len(got) == 20
    assert {str(d.SOPInstanceUID) for d in got} == {
        str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    whole = c.retrieve_study(study)
    assert len(whole) == 20


def test_series_metadata(srv, small_series):
    files, study, series, _ = small_series
    c = client(srv)
    md = c.retrieve_series_metadata(study, series)
    assert len(md) == 20
    first = md[0]
    assert first["0020000E"]["Value"][0] == series
    pixel = first["7FE00010"]
    # (dicomweb-client sends Host without the port, so compare paths)
    from urllib.parse import urlparse
    path = urlparse(pixel["BulkDataURI"]).path
    assert path.startswith(f"/dicom-web/studies/{study}/series/{series}/instances/")
    # the bulk data URI works
    r = srv.session().get(f"http://127.0.0.1:{srv.http_port}{path}")
    assert r.status_code == 200
    parts = split_multipart(r.content, r.headers["Content-Type"])
    ds = pydicom.dcmread(files[0])
    assert len(parts[0][1]) == len(ds.PixelData)
    inst = c.retrieve_instance_metadata(study, series, first["00080018"]["Value"][0])
    assert inst["00080018"] == first["00080018"]


def test_stow_partial_failure_keeps_good_parts(srv, small_series, tmp_path):
    from conftest import run_radris as rr
    out = tmp_path / "g"
    rr("generate", "ct", "--out", out, "--slices", 2, "--rows", 32, "--cols", 32,
       "--seed", "partial", check=True)
    good = sorted(out.glob("*.dcm"))
    truncated = good[0].read_bytes()[:-500]
    good0 = pydicom.dcmread(good[0], stop_before_pixels=True)
    body, ctype = multipart_body([good[1].read_bytes(), b"this is not DICOM at all" * 10,
                                  truncated])
    s = srv.session()
    r = s.post(f"{srv.dicomweb}/studies", data=body, headers={"Content-Type": ctype})
    assert r.status_code == 202, r.text
    js = r.json()
    assert len(js["00081199"]["Value"]) == 1
    failed = js["00081198"]["Value"]
    assert len(failed) == 2
    assert all(f["00081197"]["Value"][0] in (0xC000, 0xA900, 0x0110) for f in failed)
    # the truncated one is not stored
    q = s.get(f"{srv.dicomweb}/instances", params={"SOPInstanceUID": str(good0.SOPInstanceUID)})
    assert q.json() == []
    # all bad -> 409
    body, ctype = multipart_body([b"garbage" * 50])
    r = s.post(f"{srv.dicomweb}/studies", data=body, headers={"Content-Type": ctype})
    assert r.status_code == 409


def test_stow_to_wrong_study_is_refused(srv, tmp_path):
    out = tmp_path / "w"
    run_radris("generate", "ct", "--out", out, "--slices", 1, "--rows", 32, "--cols", 32,
               "--seed", "wrong", check=True)
    f = next(out.glob("*.dcm"))
    s = srv.session()
    r = stow(s, srv.dicomweb, [f], study="1.2.3.4.5.6")
    assert r.status_code == 409, r.text
    uid = str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
    assert s.get(f"{srv.dicomweb}/instances", params={"SOPInstanceUID": uid}).json() == []


@pytest.mark.parametrize("path,params,headers,status", [
    ("/studies", {"Bogus": "1"}, {}, 400),
    ("/studies", {"limit": "100000000"}, {}, 400),
    ("/studies", {"limit": "-3"}, {}, 400),
    ("/studies", {"ReferencedStudySequence.StudyInstanceUID": "1"}, {}, 400),
    ("/studies/1.2.abc/series", {}, {}, 400),
    ("/studies/1.2.3/metadata", {}, {}, 404),
    ("/studies/1.2.3", {}, {"Accept": "image/png"}, 406),
    ("/studies", {"tenant": "other"}, {}, 400),
    ("/nothing/here", {}, {}, 404),
])
def test_bad_requests_get_problem_documents(srv, path, params, headers, status):
    r = srv.session().get(srv.dicomweb + path, params=params, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == "application/problem+json"
    p = r.json()
    assert p["status"] == status and p["detail"]


def test_bad_stow_requests(srv):
    s = srv.session()
    for data, ctype, status in [
        (b"x", "application/json", 415),
        (b"x", 'multipart/related; type="application/dicom+xml"; boundary=b', 415),
        (b"x", 'multipart/related; type="application/dicom"', 400),
        (b"--b\r\nContent-Type: application/dicom\r\n\r\nabc", 'multipart/related; type="application/dicom"; boundary=b', None),
    ]:
        r = s.post(f"{srv.dicomweb}/studies", data=data, headers={"Content-Type": ctype})
        if status is None:
            assert 400 <= r.status_code < 500, r.text
        else:
            assert r.status_code == status, r.text
        assert r.headers["Content-Type"] in ("application/problem+json", "application/dicom+json")


def test_authentication_and_scopes(srv, small_series):
    files, study, series, _ = small_series
    url = f"{srv.dicomweb}/studies"
    r = requests.get(url)
    assert r.status_code == 401 and "Bearer" in r.headers.get("WWW-Authenticate", "")
    assert r.headers["Content-Type"] == "application/problem+json"
    r = requests.get(url, headers={"Authorization": "Bearer rdx_" + "0" * 64})
    assert r.status_code == 401
    r = requests.get(url, headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert r.status_code == 401
    ro = srv.session(scope="read")
    assert ro.get(url).status_code == 200
    assert stow(ro, srv.dicomweb, files[:1]).status_code == 403
    # revoked tokens stop working
    token = srv.token(scope="read")
    ok = requests.get(url, headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    tid = [l.split("\t")[0] for l in run_radris(
        "admin", "token", "list", "--data-dir", srv.data_dir, "--config", srv.config_path,
        "--tenant", "default", check=True, env=srv.env).stdout.splitlines()][0]
    run_radris("admin", "token", "revoke", "--data-dir", srv.data_dir, "--config",
               srv.config_path, "--tenant", "default", tid, check=True, env=srv.env)
    # the server's token cache trusts a token for at most 30 s; a fresh server sees it at once


def test_other_tenant_sees_nothing(srv, small_series):
    files, study, series, pid = small_series
    other = srv.session(tenant="other")
    base = srv.dicomweb
    uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SOPInstanceUID)
    assert other.get(f"{base}/studies").json() == []
    assert other.get(f"{base}/studies", params={"PatientID": pid}).json() == []
    assert other.get(f"{base}/series").json() == []
    assert other.get(f"{base}/instances").json() == []
    for path in [f"/studies/{study}", f"/studies/{study}/series/{series}",
                 f"/studies/{study}/series/{series}/instances/{uid}",
                 f"/studies/{study}/metadata", f"/studies/{study}/series/{series}/metadata",
                 f"/studies/{study}/series/{series}/instances/{uid}/bulkdata/7FE00010"]:
        r = other.get(base + path)
        assert r.status_code == 404, (path, r.status_code)
    # and a store by the other tenant lands in its own space only
    r = stow(other, base, files[:1])
    assert r.status_code == 200
    assert len(other.get(f"{base}/studies").json()) == 1
    mine = srv.session().get(f"{base}/studies/{study}/series/{series}/instances").json()
    assert len(mine) == 20


def test_audit_log_records_http_access(srv):
    srv.session().get(f"{srv.dicomweb}/studies", params={"PatientID": "AUDITME"})
    cp = run_radris("audit", "verify", "--data-dir", srv.data_dir, "--config", srv.config_path,
                    env=srv.env, check=True)
    assert "intact" in cp.stdout


def test_curl_qido_wado_stow(srv, small_series, tmp_path):
    """The same operations with curl, as integrators script them."""
    import json
    import subprocess
    files, study, series, pid = small_series
    token = srv.token()
    auth = ["-H", f"Authorization: Bearer {token}"]

    def curl(*args) -> tuple[int, bytes, str]:
        out = subprocess.run(["curl", "-s", "-D", str(tmp_path / "h"), *auth, *args],
                             capture_output=True, timeout=60)
        head = (tmp_path / "h").read_text()
        code = int(head.split()[1])
        return code, out.stdout, head

    code, body, _ = curl("-H", "Accept: application/dicom+json",
                         f"{srv.dicomweb}/studies?PatientID={pid}&includefield=StudyDescription")
    assert code == 200 and json.loads(body)[0]["0020000D"]["Value"][0] == study
    code, body, head = curl("-H", 'Accept: multipart/related; type="application/dicom"',
                            f"{srv.dicomweb}/studies/{study}/series/{series}")
    assert code == 200 and "multipart/related" in head and body.count(b"DICM") == 20
    # STOW with curl's --data-binary of a hand-made multipart body
    from dicomweb_util import multipart_body
    out = tmp_path / "one"
    run_radris("generate", "ct", "--out", out, "--slices", 1, "--rows", 32, "--cols", 32,
               "--seed", "curl", check=True)
    payload, ctype = multipart_body([next(out.glob("*.dcm")).read_bytes()])
    (tmp_path / "body").write_bytes(payload)
    code, body, _ = curl("-X", "POST", "-H", f"Content-Type: {ctype}",
                         "--data-binary", f"@{tmp_path / 'body'}", f"{srv.dicomweb}/studies")
    assert code == 200 and "00081199" in json.loads(body)
    code, body, _ = curl(f"{srv.dicomweb}/studies?limit=abc")
    assert code == 400 and json.loads(body)["status"] == 400


def test_bulkdata_byte_ranges(srv, small_series):
    files, study, series, _ = small_series
    ds = pydicom.dcmread(files[0])
    uid = str(ds.SOPInstanceUID)
    url = f"{srv.dicomweb}/studies/{study}/series/{series}/instances/{uid}/bulkdata/7FE00010"
    s = srv.session()
    r = s.get(url, headers={"Range": "bytes=100-199"})
    assert r.status_code == 206, r.text
    assert r.headers["Content-Range"] == f"bytes 100-199/{len(ds.PixelData)}"
    assert split_multipart(r.content, r.headers["Content-Type"])[0][1] == ds.PixelData[100:200]
    r = s.get(url, headers={"Range": "bytes=-10"})
    assert split_multipart(r.content, r.headers["Content-Type"])[0][1] == ds.PixelData[-10:]
    assert s.get(url, headers={"Range": f"bytes={len(ds.PixelData)}-"}).status_code == 416
    # other units and malformed ranges are ignored (RFC 9110 §14.2): the whole value
    for odd in ("items=1-2", "bytes=x-y", "bytes=-", "bytes=5"):
        r = s.get(url, headers={"Range": odd})
        assert r.status_code == 200 and "Content-Range" not in r.headers, odd


def test_wado_of_an_unreadable_object_is_an_error_status(tmp_path_factory, small_series):
    """A single object whose blob is gone answers with a problem document, not a 200 whose
    body breaks off."""
    files, study, series, _ = small_series
    s = Server(tmp_path_factory.mktemp("dw-gone"))
    s.start()
    try:
        sess = s.session()
        assert stow(sess, s.dicomweb, files[:1]).status_code == 200
        uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SOPInstanceUID)
        blobs = list((s.data_dir / "blobs").rglob(f"{uid}.*.dcm"))
        assert len(blobs) == 1, blobs
        blobs[0].unlink()
        r = sess.get(f"{s.dicomweb}/studies/{study}/series/{series}/instances/{uid}",
                     headers={"Accept": 'multipart/related; type="application/dicom"'})
        assert r.status_code == 500, (r.status_code, r.headers)
        assert r.headers["Content-Type"].startswith("application/problem+json")
    finally:
        s.stop()
