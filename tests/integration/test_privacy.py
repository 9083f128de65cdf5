"""Subject access export, legal hold and erasure (GDPR art. 15 and 17), per tenant, audited."""
import io
import json
import subprocess
import zipfile

import pydicom
import pytest

import dimse
from conftest import Server, dcmtk_env, run_radris


@pytest.fixture(scope="module")
def priv(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("priv"))
    srv.start()
    sets = {}
    for seed, n in (("21", 3), ("22", 2)):
        out = tmp_path_factory.mktemp(f"p{seed}")
        run_radris("generate", "ct", "--out", out, "--slices", n, "--rows", 32, "--cols", 32,
                   "--seed", seed, check=True)
        files = sorted(out.glob("*.dcm"))
        cp = subprocess.run(["/usr/bin/storescu", "-aet", dimse.TESTSCU, "-aec",
                             dimse.SERVER_AET, "127.0.0.1", str(srv.port), *map(str, files)],
                            capture_output=True, text=True, env=dcmtk_env(), timeout=60)
        assert cp.returncode == 0, cp.stderr
        pid = str(pydicom.dcmread(files[0], stop_before_pixels=True).PatientID)
        sets[pid] = files
    yield srv, sets
    srv.stop()


def audit_until(session, srv, action, pred, timeout=10.0):
    """Audit records (they are written in batches) matching `pred`, polled until present."""
    import time
    end = time.time() + timeout
    while True:
        rows = session.get(f"http://127.0.0.1:{srv.http_port}/api/v1/audit",
                           params={"action": action, "limit": 1000}, timeout=10).json()
        if pred(rows) or time.time() > end:
            return rows
        time.sleep(0.2)


def url(srv, pid, tail=""):
    return f"http://127.0.0.1:{srv.http_port}/api/v1/admin/patients/{pid}{tail}"


def test_subject_access_export_has_every_instance_and_the_audit_trail(priv):
    srv, sets = priv
    pid, files = next(iter(sets.items()))
    admin = srv.session(scope="read,admin")
    # someone reads the study first: that access must show in the extract
    study = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    assert admin.get(f"{srv.dicomweb}/studies/{study}/metadata", timeout=30).status_code == 200
    # and measures something in the viewer: part of what is held about the patient
    doc = {"measurements": [{"uid": "m1", "tool": "Length", "summary": "12.5 mm"}], "keyImages": []}
    writer = srv.session(scope="read,write")
    put = writer.put(f"http://127.0.0.1:{srv.http_port}/api/v1/studies/{study}/annotations",
                    json={"version": 0, "document": doc}, timeout=30)
    assert put.status_code == 200, put.text
    r = admin.get(url(srv, pid, "/export"), timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/zip"
    z = zipfile.ZipFile(io.BytesIO(r.content))
    names = z.namelist()
    dcm = [n for n in names if n.startswith("dicom/")]
    assert len(dcm) == len(files)
    sent = {str(pydicom.dcmread(f).SOPInstanceUID): pydicom.dcmread(f) for f in files}
    for n in dcm:
        ds = pydicom.dcmread(io.BytesIO(z.read(n)))
        assert ds.PixelData == sent[str(ds.SOPInstanceUID)].PixelData
        assert str(ds.PatientID) == pid
    manifest = json.loads(z.read("manifest.json"))
    assert manifest["patient_id"] == pid and manifest["instances"] == len(files)
    assert manifest["annotation_documents"] == 1
    annotations = json.loads(z.read("annotations.json"))
    assert [(a["study_uid"], a["document"]) for a in annotations] == [(study, doc)]
    assert annotations[0]["user"] and annotations[0]["version"] == 1
    audit = json.loads(z.read("audit.json"))
    assert any(study in a["resource"] for a in audit)
    # the export itself is audited
    found = audit_until(admin, srv, "privacy.export",
                        lambda rows: any(pid in a["resource"] for a in rows))
    assert any(pid in a["resource"] for a in found), found


def test_export_needs_admin_and_is_tenant_scoped(priv):
    srv, sets = priv
    pid = next(iter(sets))
    reader = srv.session(scope="read,write,delete")
    assert reader.get(url(srv, pid, "/export"), timeout=10).status_code == 403
    other = srv.session(tenant="other", scope="read,write,delete,admin")
    assert other.get(url(srv, pid, "/export"), timeout=10).status_code == 404
    assert other.delete(url(srv, pid), timeout=10).status_code == 404
    assert other.put(url(srv, pid, "/legal-hold"), json={"reason": "not mine at all"},
                     timeout=10).status_code == 200  # a hold in tenant B blocks nothing in A
    assert other.delete(url(srv, pid, "/legal-hold"), timeout=10).status_code == 204


def test_legal_hold_blocks_erasure_until_lifted(priv):
    srv, sets = priv
    pid, files = list(sets.items())[1]
    admin = srv.session(scope="read,write,delete,admin")
    r = admin.put(url(srv, pid, "/legal-hold"), json={"reason": "x"}, timeout=10)
    assert r.status_code == 400 and r.headers["Content-Type"] == "application/problem+json"
    r = admin.put(url(srv, pid, "/legal-hold"), json={"reason": "case 2026-117, retain"},
                  timeout=10)
    assert r.status_code == 200 and r.json()["reason"] == "case 2026-117, retain"
    r = admin.delete(url(srv, pid), timeout=10)
    assert r.status_code == 409 and "legal hold" in r.json()["detail"]
    study = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    r = admin.delete(f"http://127.0.0.1:{srv.http_port}/api/v1/studies/{study}", timeout=10)
    assert r.status_code == 409, "a held study cannot be deleted one by one either"
    # an admin without the delete scope cannot erase
    assert srv.session(scope="admin").delete(url(srv, pid), timeout=10).status_code in (403, 409)
    assert admin.delete(url(srv, pid, "/legal-hold"), timeout=10).status_code == 204
    r = admin.delete(url(srv, pid), timeout=10)
    assert r.status_code == 200 and r.json() == {"studies": 1, "instances": len(files)}
    assert admin.get(url(srv, pid, "/export"), timeout=10).status_code == 404
    want = {("privacy.hold.place", "success"), ("privacy.erase", "denied"),
            ("privacy.hold.lift", "success"), ("privacy.erase", "success")}

    def actions(rows):
        return {(a["action"], a["outcome"]) for a in rows if pid in a["resource"]}
    found = audit_until(admin, srv, "privacy.", lambda rows: want <= actions(rows))
    assert want <= actions(found), found
    srv.assert_verify_clean()


def test_stow_is_audited_per_study(priv, tmp_path):
    from dicomweb_util import stow
    srv, _ = priv
    out = tmp_path / "g"
    run_radris("generate", "ct", "--out", out, "--slices", 2, "--rows", 16, "--cols", 16,
               "--seed", "stowaudit", check=True)
    files = sorted(out.glob("*.dcm"))
    s = srv.session(scope="read,write,admin")
    assert stow(s, srv.dicomweb, files).status_code == 200
    study = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    rows = audit_until(s, srv, "dicomweb.stow",
                       lambda rows: any(study in a["resource"] for a in rows))
    mine = [a for a in rows if study in a["resource"]]
    assert mine and mine[0]["detail"] == "instances=2 refused=0", mine
