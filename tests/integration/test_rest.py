"""REST API (/api/v1) against the running server: filters, sorting, cursor paging, deletion,
statistics, tokens, audit search, the OpenAPI document, and a cross-tenant matrix generated
from the route tables (OpenAPI paths and the DICOMweb router), so new routes are covered."""
from __future__ import annotations

import re
from pathlib import Path

import pydicom
import pytest
import requests
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from conftest import Server
from dicomweb_util import part10, stow

ROOT = Path(__file__).resolve().parents[2]


def tiny_instance(i: int, patient: str, date: str, modality: str = "CT",
                  accession: str | None = None) -> bytes:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = patient
    ds.PatientName = f"Rest^{patient}"
    ds.StudyDate = date
    ds.StudyTime = f"{i % 24:02d}0000"
    ds.AccessionNumber = accession or f"A{i:05d}"
    ds.Modality = modality
    ds.StudyDescription = f"study {i}"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    return part10(ds)


N = 37


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("rest"))
    s.start()
    blobs = [tiny_instance(i, f"P{i % 5}", f"2024{1 + i % 12:02d}{1 + i % 28:02d}",
                           "MR" if i % 3 == 0 else "CT") for i in range(N)]
    r = stow(s.session(), s.dicomweb, blobs)
    assert r.status_code == 200, r.text
    yield s
    s.stop()


def api(srv: Server) -> str:
    return f"http://127.0.0.1:{srv.http_port}/api/v1"


def walk(session, url, **params) -> list[dict]:
    items, cursor, pages = [], None, 0
    while True:
        p = dict(params)
        if cursor:
            p["cursor"] = cursor
        r = session.get(url, params=p)
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["items"]
        pages += 1
        cursor = body.get("next_cursor")
        if not cursor:
            return items


@pytest.mark.parametrize("sort", ["date", "-date", "received", "-received", "accession",
                                  "-accession"])
def test_cursor_paging_visits_every_study_once_in_order(srv, sort):
    s = srv.session()
    items = walk(s, f"{api(srv)}/studies", sort=sort, limit=5)
    assert len(items) == N
    assert len({x["study_uid"] for x in items}) == N
    key = {"date": lambda x: (x["study_date"], x["study_time"], x["study_uid"]),
           "received": lambda x: (x["received_at"], x["study_uid"]),
           "accession": lambda x: (x["accession_number"], x["study_uid"])}[sort.lstrip("-")]
    assert items == sorted(items, key=key, reverse=sort.startswith("-"))


def test_filters(srv):
    s = srv.session()
    base = f"{api(srv)}/studies"
    all_p0 = walk(s, base, patient_id="P0")
    assert len(all_p0) == len([i for i in range(N) if i % 5 == 0])
    assert all(x["patient_id"] == "P0" for x in all_p0)
    mr = walk(s, base, modality="mr")
    assert len(mr) == len([i for i in range(N) if i % 3 == 0])
    assert len(walk(s, base, patient_name="rest^p1*")) == len([i for i in range(N) if i % 5 == 1])
    ranged = walk(s, base, date_from="20240301", date_to="20240430")
    assert ranged and all("20240301" <= x["study_date"] <= "20240430" for x in ranged)
    assert walk(s, base, accession_number="A00007")[0]["accession_number"] == "A00007"
    pts = walk(s, f"{api(srv)}/patients", limit=2)
    assert [p["patient_id"] for p in pts] == ["P0", "P1", "P2", "P3", "P4"]


@pytest.mark.parametrize("params", [
    {"limit": 0}, {"limit": 5000}, {"sort": "name"}, {"date_from": "2024-01-01"},
    {"cursor": "nothex"}, {"cursor": "41"}, {"unknown": "1"}, {"tenant": "other"},
])
def test_bad_list_requests(srv, params):
    r = srv.session().get(f"{api(srv)}/studies", params=params)
    assert r.status_code == 400, r.text
    assert r.headers["Content-Type"] == "application/problem+json"


def test_study_detail_series_instances_and_delete(srv):
    s = srv.session()
    study = walk(s, f"{api(srv)}/studies", patient_id="P4")[0]
    d = s.get(f"{api(srv)}/studies/{study['study_uid']}").json()
    assert d["study"]["study_uid"] == study["study_uid"] and len(d["series"]) == 1
    series_uid = d["series"][0]["series_uid"]
    insts = s.get(f"{api(srv)}/series/{series_uid}/instances").json()
    assert len(insts) == 1 and len(insts[0]["sha256"]) == 64
    before = s.get(f"{api(srv)}/statistics").json()
    ro = srv.session(scope="read")
    assert ro.delete(f"{api(srv)}/studies/{study['study_uid']}").status_code == 403
    r = s.delete(f"{api(srv)}/studies/{study['study_uid']}")
    assert r.status_code == 200 and r.json()["deleted_instances"] == 1
    assert s.get(f"{api(srv)}/studies/{study['study_uid']}").status_code == 404
    assert s.delete(f"{api(srv)}/studies/{study['study_uid']}").status_code == 404
    after = s.get(f"{api(srv)}/statistics").json()
    assert after["studies"] == before["studies"] - 1
    srv.assert_verify_clean()


def test_openapi_and_docs(srv):
    base = f"http://127.0.0.1:{srv.http_port}"
    doc = requests.get(f"{base}/api/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert "/api/v1/studies" in doc["paths"]
    assert "bearer" in doc["components"]["securitySchemes"]
    r = requests.get(f"{base}/api/docs/")
    assert r.status_code == 200 and "swagger" in r.text.lower()


def test_tokens_and_audit_search_need_admin(srv):
    s = srv.session()  # read,write,delete
    assert s.get(f"{api(srv)}/admin/tokens").status_code == 403
    assert s.get(f"{api(srv)}/audit").status_code == 403
    admin = srv.session(scope="admin,read")
    r = admin.post(f"{api(srv)}/admin/tokens", json={"user": "ai-service", "scopes": "read"})
    assert r.status_code == 201, r.text
    tok = r.json()
    new = requests.Session()
    new.headers["Authorization"] = f"Bearer {tok['token']}"
    who = new.get(f"{api(srv)}/whoami").json()
    assert who == {"tenant": "default", "user": "ai-service", "scopes": ["read"]}
    assert admin.delete(f"{api(srv)}/admin/tokens/{tok['token_id']}").status_code == 204
    assert new.get(f"{api(srv)}/whoami").status_code == 401
    assert admin.post(f"{api(srv)}/admin/tokens", json={"user": "x", "scopes": "root"}).status_code == 400
    assert admin.post(f"{api(srv)}/admin/tokens", data="{", headers={"Content-Type": "application/json"}).status_code == 400
    # the audit log shows what happened, including the refused attempts
    entries = admin.get(f"{api(srv)}/audit", params={"action": "http DELETE", "limit": 100}).json()
    assert any(e["outcome"] == "success" and "/admin/tokens/" in e["resource"] for e in entries)
    denied = admin.get(f"{api(srv)}/audit", params={"limit": 1000}).json()
    assert any(e["outcome"] == "denied" for e in denied)


def dicomweb_routes() -> list[str]:
    src = (ROOT / "crates/radris-server/src/http/dicomweb/mod.rs").read_text()
    return re.findall(r'\.route\(\s*"([^"]+)"\s*,\s*(?:get|post)', src)


def test_cross_tenant_matrix_from_route_tables(srv):
    """Tenant B's principal, with every scope, against every route filled with tenant A's ids."""
    a = srv.session(scope="read,write,delete,admin")
    study = walk(a, f"{api(srv)}/studies", patient_id="P2")[0]["study_uid"]
    detail = a.get(f"{api(srv)}/studies/{study}").json()
    series = detail["series"][0]["series_uid"]
    sop = a.get(f"{api(srv)}/series/{series}/instances").json()[0]["sop_instance_uid"]
    token_id = a.post(f"{api(srv)}/admin/tokens", json={"user": "victim", "scopes": "read"}).json()["token_id"]
    fill = {"study_uid": study, "study": study, "series_uid": series, "series": series,
            "sop_instance_uid": sop, "instance": sop, "token_id": token_id, "frames": "1",
            "tag": "00100010", "patient_id": "P2", "user": "victim",
            "grant_id": "0190d0a0-0000-7000-8000-000000000000"}
    b = srv.session(tenant="other", scope="read,write,delete,admin")
    base = f"http://127.0.0.1:{srv.http_port}"
    doc = requests.get(f"{base}/api/openapi.json").json()
    routes = [(m.upper(), p) for p, ops in doc["paths"].items() for m in ops]
    routes += [("GET", p) for p in dicomweb_routes() if p != "/wado"]
    assert len(routes) > 25
    # B's audit log is read first: B's own probes below name A's ids in their paths
    routes.sort(key=lambda r: not r[1].startswith("/api/v1/audit"))
    checked = 0
    for method, path in routes:
        url = base + re.sub(r"\{(\w+)\}", lambda m: fill[m.group(1)], path)
        if method in ("POST", "PUT"):
            continue  # creation lands in B's own tenant (tested in test_dicomweb, test_privacy)
        r = b.request(method, url)
        if r.status_code == 200:
            # lists are allowed but must hold nothing of A
            text = r.text
            assert study not in text and series not in text and sop not in text \
                and token_id not in text, (method, path, text[:300])
            assert "victim" not in text
        else:
            assert r.status_code in (404, 400), (method, path, r.status_code, r.text[:200])
        checked += 1
    # A's data is all still there
    assert a.get(f"{api(srv)}/studies/{study}").status_code == 200
    assert a.get(f"{api(srv)}/admin/patients/P2/export").status_code == 200
    assert any(t["token_id"] == token_id and not t["revoked"]
               for t in a.get(f"{api(srv)}/admin/tokens").json())
    assert checked > 20


def test_dimse_queries_and_stores_are_audited(srv, tmp_path):
    import dimse
    from conftest import run_radris
    out = tmp_path / "g"
    run_radris("generate", "ct", "--out", out, "--slices", 3, "--rows", 32, "--cols", 32,
               "--seed", "audit", check=True)
    run_radris("dicom", "store", "--aet", "TESTSCU", "--aec", dimse.SERVER_AET, "127.0.0.1",
               srv.port, *sorted(out.glob("*.dcm")), check=True)
    run_radris("dicom", "find", "--aet", "TESTSCU", "--aec", dimse.SERVER_AET, "127.0.0.1",
               srv.port, "-k", "PatientID=P3", "-k", "StudyInstanceUID", check=True)
    study = str(pydicom.dcmread(next(out.glob("*.dcm")), stop_before_pixels=True).StudyInstanceUID)
    admin = srv.session(scope="admin")
    import time
    for _ in range(50):
        entries = admin.get(f"{api(srv)}/audit", params={"action": "dimse.", "limit": 100}).json()
        if any(e["action"] == "dimse.c-find" for e in entries):
            break
        time.sleep(0.1)
    stores = [e for e in entries if e["action"] == "dimse.c-store"]
    assert any(e["resource"] == f"study {study}" and e["detail"] == "instances=3"
               and e["actor"] == "ae:TESTSCU" for e in stores), entries
    finds = [e for e in entries if e["action"] == "dimse.c-find"]
    assert finds and "P3" in finds[0]["detail"] and finds[0]["source"].startswith("127.0.0.1")
    # the other tenant's auditor sees none of it
    other = srv.session(tenant="other", scope="admin")
    assert all(e["actor"] != "ae:TESTSCU" for e in
               other.get(f"{api(srv)}/audit", params={"limit": 1000}).json())


def test_token_scopes_cannot_exceed_the_creator(srv):
    auditor = srv.session(scope="admin")
    r = auditor.post(f"{api(srv)}/admin/tokens", json={"user": "x", "scopes": "read,write,delete,admin"})
    assert r.status_code == 403, r.text
    assert auditor.post(f"{api(srv)}/admin/tokens", json={"user": "x", "scopes": "admin"}).status_code == 201
    r = srv.session().get(f"{srv.dicomweb}/studies", params={"offset": str(2**63)})
    assert r.status_code == 400


def test_api_answers_are_not_cached(srv):
    a = srv.session(scope="read,write,delete,admin")
    r = a.post(f"{api(srv)}/admin/tokens", json={"user": "cache-probe", "scopes": "read"})
    assert r.status_code in (200, 201) and r.headers["Cache-Control"] == "no-store"
    assert a.get(f"{api(srv)}/studies").headers["Cache-Control"] == "no-store"
