"""Reports (issue 7) against the real server: templates, a report written, autosaved,
refused when incomplete or re-authentication fails, signed (the order follows), verified and
shown to fail verification once a stored byte changes, amended only by addendum, stored as
DICOM SR in the study (valid by dciodvfy, readable by pydicom), printed as PDF, critical
results acknowledged, peer reviewed; another tenant sees none of it."""
from __future__ import annotations

import shutil
import sqlite3
import subprocess

import pydicom
import pytest
import requests

from conftest import Server, cookie_session, create_users
from dicomweb_util import split_multipart

PASSWORD = "amber fields under a quiet sky"


class Env:
    def __init__(self, srv: Server):
        self.srv = srv
        self.api = f"http://127.0.0.1:{srv.http_port}/api/v1"
        self.admin = srv.session(scope="read,write,delete,admin")
        create_users(self.admin, self.api, PASSWORD)
        self.s = {u: self.login(u) for u in ("tech", "alice", "bob", "carl")}
        a = self.admin
        r = a.put(f"{self.api}/ris/procedures/CTCH", json={
            "name": "CT chest", "modality": "CT", "body_part": "CHEST", "duration_min": 20})
        assert r.status_code == 200, r.text
        r = a.post(f"{self.api}/ris/resources", json={
            "kind": "modality", "name": "CT 1", "modality": "CT", "ae_title": "CT01",
            "open_from": "00:00", "open_to": "24:00"})
        assert r.status_code == 201, r.text
        self.ct = r.json()["id"]
        r = self.s["tech"].post(f"{self.api}/ris/patients", json={
            "patient_id": "REP-1", "name": "Report^Rita", "birth_date": "19600101", "sex": "F"})
        assert r.status_code == 201, r.text
        self.patient = r.json()

    def login(self, user: str, tenant: str = "default") -> requests.Session:
        return cookie_session(self.api, user, PASSWORD, tenant)

    def order_with_images(self, hour: int) -> dict:
        """An order walked to images_complete, claimed by alice."""
        t = self.s["tech"]
        r = t.post(f"{self.api}/ris/orders", json={
            "patient": self.patient["id"], "procedure_code": "CTCH", "priority": "routine"})
        assert r.status_code == 201, r.text
        o = r.json()
        r = t.post(f"{self.api}/ris/appointments", json={
            "order_id": o["id"], "resource_id": self.ct,
            "starts_at": f"2026-01-0{1 + hour % 9}T{hour:02d}:00:00Z"})
        assert r.status_code == 201, r.text
        r = t.post(f"{self.api}/ris/appointments/{r.json()['id']}/arrive")
        assert r.status_code == 200, r.text
        for to in ("in_progress", "images_complete"):
            r = t.post(f"{self.api}/ris/orders/{o['id']}/transition", json={"to": to})
            assert r.status_code == 200, r.text
        r = self.s["alice"].post(f"{self.api}/ris/reading/{o['id']}/claim")
        assert r.status_code == 200, r.text
        return r.json()

    def template_id(self, word: str) -> str:
        r = self.s["alice"].get(f"{self.api}/reports/templates")
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        return next(t["id"] for t in items if word.lower() in t["title"].lower())


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("reports"))
    srv.start()
    yield Env(srv)
    srv.stop()


def png_logo() -> str:
    """A 40×20 dark-blue PNG, base64."""
    import base64
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + bytes([10, 30, 90]) * 40 for _ in range(20))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 40, 20, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return base64.b64encode(png).decode()


def index_sql(srv: Server, statement: str) -> None:
    """Run a statement on the server's index behind its back (SQLite file or PostgreSQL)."""
    url = srv.env.get("RADRIS_DATABASE_URL")
    if url:
        subprocess.run(["psql", url, "-qc", statement], check=True, capture_output=True)
    else:
        db = sqlite3.connect(srv.data_dir / "index.sqlite")
        db.execute(statement)
        db.commit()
        db.close()


def problem(r: requests.Response, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["Content-Type"].startswith("application/problem+json"), r.headers
    return r.json()


def required_fields(env: Env, template_id: str) -> list[str]:
    r = env.s["alice"].get(f"{env.api}/reports/templates/{template_id}")
    assert r.status_code == 200, r.text
    import re
    ids = []
    for m in re.finditer(r"<(input|select|textarea)\b[^>]*>", r.text):
        tag = m.group(0)
        if "required" in tag:
            ids.append(re.search(r'\bid="([^"]+)"', tag).group(1))
    return ids


def test_templates_install_and_bad_uploads_are_refused(env):
    r = env.s["alice"].get(f"{env.api}/reports/templates")
    titles = " | ".join(t["title"] for t in r.json()["items"])
    assert len(r.json()["items"]) >= 5, titles
    problem(env.admin.put(f"{env.api}/reports/templates/broken", data="<html><body><p>not closed"),
            422)
    problem(env.s["alice"].put(f"{env.api}/reports/templates/mine", data="<html/>"), 403)


def test_a_report_is_written_signed_verified_amended_and_stored(env, tmp_path):
    alice = env.s["alice"]
    order = env.order_with_images(8)
    tid = env.template_id("CT chest")
    r = alice.post(f"{env.api}/reports", json={"order_id": order["id"], "template_id": tid})
    assert r.status_code == 201, r.text
    rep = r.json()
    assert rep["status"] == "draft" and rep["order_state"] == "images_complete"
    problem(alice.post(f"{env.api}/reports", json={"order_id": order["id"], "template_id": tid}),
            409)

    # autosave; a stale revision is refused
    content = {"narrative": "Lungs are clear. No pleural effusion.", "impression": "Normal CT chest."}
    r = alice.put(f"{env.api}/reports/{rep['id']}", json={"rev": rep["rev"], "content": content})
    assert r.status_code == 200, r.text
    rev = r.json()["rev"]
    problem(alice.put(f"{env.api}/reports/{rep['id']}", json={"rev": rep["rev"], "content": content}),
            409)
    assert alice.get(f"{env.api}/reports/{rep['id']}").json()["content"]["narrative"] == content["narrative"]

    # incomplete or without re-authentication: nothing is signed
    required = required_fields(env, tid)
    assert required, "the CT chest template has required fields"
    body = problem(alice.post(f"{env.api}/reports/{rep['id']}/sign",
                              json={"status": "final", "password": PASSWORD}), 422)
    assert body["problems"], body
    problem(alice.post(f"{env.api}/reports/{rep['id']}/sign",
                       json={"status": "final", "password": "wrong"}), 403)
    got = alice.get(f"{env.api}/reports/{rep['id']}").json()
    assert got["status"] == "draft" and got["order_state"] == "images_complete" and not got["versions"]

    # fill the required fields with the first allowed value and sign
    tpl = alice.get(f"{env.api}/reports/templates/{tid}").text
    values = {}
    import re
    for fid in required:
        tag = re.search(rf'<(input|select|textarea)\b[^>]*\bid="{re.escape(fid)}"[^>]*>', tpl).group(0)
        if tag.startswith("<select"):
            block = tpl[tpl.index(tag):]
            values[fid] = re.search(r'<option[^>]*value="([^"]+)"', block).group(1)
        elif 'type="number"' in tag:
            values[fid] = 5
        elif 'type="date"' in tag:
            values[fid] = "2026-01-02"
        else:
            values[fid] = "normal"
    content["values"] = values
    r = alice.put(f"{env.api}/reports/{rep['id']}", json={"rev": rev, "content": content})
    assert r.status_code == 200, r.text
    problem(env.s["bob"].post(f"{env.api}/reports/{rep['id']}/sign",
                              json={"status": "final", "password": PASSWORD}), 409)  # not his case
    r = alice.post(f"{env.api}/reports/{rep['id']}/sign", json={"status": "final", "password": PASSWORD})
    assert r.status_code == 200, r.text
    signed = r.json()
    assert signed["version"]["version"] == 1 and len(signed["version"]["sha256"]) == 64
    got = alice.get(f"{env.api}/reports/{rep['id']}").json()
    assert got["status"] == "final" and got["order_state"] == "final"

    # verification, and failure once a byte of the stored report changes
    v = alice.get(f"{env.api}/reports/{rep['id']}/versions/1/verify").json()
    assert v["valid"] is True, v
    change = "UPDATE report_versions SET canonical = replace(canonical, '{a}', '{b}') " \
             f"WHERE report_id = '{rep['id']}'"
    index_sql(env.srv, change.format(a="Lungs are clear", b="Lungs are clean"))
    v = alice.get(f"{env.api}/reports/{rep['id']}/versions/1/verify").json()
    assert v["valid"] is False and v["problem"], v
    index_sql(env.srv, change.format(a="Lungs are clean", b="Lungs are clear"))
    assert alice.get(f"{env.api}/reports/{rep['id']}/versions/1/verify").json()["valid"] is True

    # a signed report changes only by addendum
    rev = got["rev"]
    changed = dict(content, narrative="Something else.")
    problem(alice.put(f"{env.api}/reports/{rep['id']}", json={"rev": rev, "content": changed}), 409)
    add = dict(content, addenda=["Addendum: comparison with the prior shows no change."])
    r = alice.put(f"{env.api}/reports/{rep['id']}", json={"rev": rev, "content": add})
    assert r.status_code == 200, r.text
    r = alice.post(f"{env.api}/reports/{rep['id']}/sign", json={"status": "amended", "password": PASSWORD})
    assert r.status_code == 200, r.text
    got = alice.get(f"{env.api}/reports/{rep['id']}").json()
    assert got["status"] == "amended" and got["order_state"] == "amended" and len(got["versions"]) == 2

    # the DICOM SR in the study: valid and readable
    sr_uid = got["versions"][0]["sr_sop_uid"]
    assert sr_uid, got["versions"]
    r = env.admin.get(f"{env.srv.dicomweb}/studies/{order['study_uid']}/series",
                      params={"Modality": "SR"})
    assert r.status_code == 200 and len(r.json()) == 1, r.text  # one series for every version
    r = env.admin.get(f"{env.srv.dicomweb}/studies/{order['study_uid']}/instances",
                      params={"SOPInstanceUID": sr_uid})
    assert r.status_code == 200 and r.json(), r.text
    series = r.json()[0]["0020000E"]["Value"][0]
    r = env.admin.get(f"{env.srv.dicomweb}/studies/{order['study_uid']}/series/{series}/instances/{sr_uid}",
                      headers={"Accept": 'multipart/related; type="application/dicom"'})
    assert r.status_code == 200, r.text[:300]
    [(_, part)] = split_multipart(r.content, r.headers["Content-Type"])
    sr_file = tmp_path / "report.dcm"
    sr_file.write_bytes(part)
    ds = pydicom.dcmread(sr_file)
    assert ds.Modality == "SR" and ds.VerificationFlag == "VERIFIED"
    texts = []

    def walk(items):
        for it in items:
            if it.ValueType == "TEXT":
                texts.append(it.TextValue)
            if "ContentSequence" in it:
                walk(it.ContentSequence)
    walk(ds.ContentSequence)
    assert any("Lungs are clear" in t for t in texts), texts
    # scripts/deps.sh installs dicom3tools and poppler-utils: these checks never skip
    assert shutil.which("dciodvfy"), "dciodvfy (dicom3tools) is needed"
    cp = subprocess.run(["dciodvfy", str(sr_file)], capture_output=True, text=True)
    errors = [line for line in (cp.stdout + cp.stderr).splitlines() if line.startswith("Error")]
    assert not errors, cp.stdout + cp.stderr

    # the PDF, with the tenant's institution name and logo
    problem(env.admin.put(f"{env.api}/reports/branding", json={
        "institution": "St Elsewhere Radiology", "logo_png": "bm90IGEgcG5n"}), 422)
    r = env.admin.put(f"{env.api}/reports/branding", json={
        "institution": "St Elsewhere Radiology", "logo_png": png_logo()})
    assert r.status_code == 200, r.text
    problem(alice.put(f"{env.api}/reports/branding", json={"institution": "x"}), 403)
    r = alice.get(f"{env.api}/reports/{rep['id']}/pdf")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/pdf", r.text[:200]
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(r.content)
    assert shutil.which("pdftotext") and shutil.which("pdftoppm"), "poppler-utils is needed"
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stdout
    assert "Report, Rita" in text, text
    assert "Lungs are clear" in text and "Addendum" in text, text
    assert "St Elsewhere Radiology" in text, text
    subprocess.run(["pdftoppm", "-png", "-r", "40", str(pdf), str(tmp_path / "page")], check=True)
    assert list(tmp_path.glob("page*.png"))

    # critical result: flagged by the radiologist, acknowledged by the referring physician
    r = alice.post(f"{env.api}/reports/{rep['id']}/critical", json={"text": "Call Dr Hansen"})
    assert r.status_code == 200, r.text
    r = env.s["carl"].post(f"{env.api}/reports/{rep['id']}/critical/ack")
    assert r.status_code == 200, r.text
    crit = r.json()["critical"]
    assert crit["acknowledged_by"] == "carl" and crit["communication_min"] is not None

    # peer review by another radiologist
    bob = env.s["bob"]
    r = bob.post(f"{env.api}/reports/peer-reviews/assign", json={"count": 5})
    assert r.status_code == 200, r.text
    mine = [x for x in r.json()["items"] if x["report_id"] == rep["id"]]
    assert mine, r.json()
    problem(bob.post(f"{env.api}/reports/peer-reviews/{mine[0]['id']}", json={"score": 2}), 422)
    r = bob.post(f"{env.api}/reports/peer-reviews/{mine[0]['id']}",
                 json={"score": 2, "significance": "a", "comment": "minor"})
    assert r.status_code == 200, r.text
    r = bob.post(f"{env.api}/reports/peer-reviews/{mine[0]['id']}/followup",
                 json={"text": "discussed with the author"})
    assert r.status_code == 200 and r.json()["followup"] == "discussed with the author", r.text
    q = alice.get(f"{env.api}/reports/quality").json()
    assert q["by_score"].get("2a") == 1 and q["critical_acknowledged"] == 1, q

    # another tenant sees nothing
    other = env.srv.session(tenant="other", scope="read,write,delete,admin")
    assert other.get(f"{env.api}/reports/{rep['id']}").status_code == 404
    assert other.get(f"{env.api}/reports/{rep['id']}/pdf").status_code == 404


def test_no_report_for_a_cancelled_order(env):
    t = env.s["tech"]
    r = t.post(f"{env.api}/ris/orders", json={
        "patient": env.patient["id"], "procedure_code": "CTCH", "priority": "routine"})
    o = r.json()
    assert t.post(f"{env.api}/ris/orders/{o['id']}/cancel", json={"reason": "duplicate"}).status_code == 200
    body = problem(env.s["alice"].post(f"{env.api}/reports", json={
        "order_id": o["id"], "template_id": env.template_id("CT chest")}), 409)
    assert "cancelled" in body["detail"]


def test_lung_rads_is_computed_from_the_entered_nodules(env):
    alice = env.s["alice"]
    order = env.order_with_images(10)
    r = alice.post(f"{env.api}/reports", json={"order_id": order["id"], "template_id": "lung-nodule"})
    assert r.status_code == 201, r.text
    rep = r.json()
    values = {"exam_type": "baseline", "incomplete_reason": "none", "nodule1_type": "solid",
              "nodule1_diameter": 9, "nodule1_calcification": "no", "nodule1_suspicious": "no"}
    r = alice.put(f"{env.api}/reports/{rep['id']}", json={"rev": rep["rev"], "content": {"values": values}})
    assert r.status_code == 200, r.text
    got = alice.get(f"{env.api}/reports/{rep['id']}").json()
    assert got["lung_rads"] and got["lung_rads"]["label"] == "4A", got["lung_rads"]
    assert got["content"]["values"]["lungrads_category"] == "4A"
    # an 18 mm solid nodule is 4B
    values["nodule1_diameter"] = 18
    r = alice.put(f"{env.api}/reports/{rep['id']}", json={"rev": got["rev"], "content": {"values": values}})
    assert r.status_code == 200, r.text
    assert alice.get(f"{env.api}/reports/{rep['id']}").json()["content"]["values"]["lungrads_category"] == "4B"
    # a value of the wrong type is refused and nothing changes
    bad = dict(values, nodule1_diameter="big")
    problem(alice.put(f"{env.api}/reports/{rep['id']}", json={"rev": got["rev"] + 1, "content": {"values": bad}}), 422)
