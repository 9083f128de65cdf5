"""The RIS end to end (issue 6): an order walks ordered → scheduled → arrived → in progress →
images complete → preliminary → final while a simulated modality speaks real DICOM to the
server with independent clients: dcmtk `findscu -W` reads the modality worklist, `storescu`
sends the images, pynetdicom sends MPPS N-CREATE/N-SET and storage commitment (answered on
the same association and on a new one). The case lands on a radiologist's reading worklist
by the routing rules. Bad input (double booking, unknown procedure, unknown MPPS step,
malformed worklist keys, illegal transitions) changes nothing; another tenant sees nothing.
"""
from __future__ import annotations

import datetime as dt
import subprocess
import threading
import time
from pathlib import Path

import pydicom
import pytest
import requests
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import (ModalityPerformedProcedureStep, ModalityWorklistInformationFind,
                                  StorageCommitmentPushModel)

import dimse
from conftest import Server, cookie_session, create_users, dcmtk_env, free_port

PASSWORD = "quiet lanterns over the harbour"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
TODAY = dt.datetime.now(dt.timezone.utc).date()
DA = TODAY.strftime("%Y%m%d")


def at(hour: int, minute: int = 0) -> str:
    return f"{TODAY.isoformat()}T{hour:02d}:{minute:02d}:00Z"


class Ris:
    def __init__(self, srv: Server, commit_port: int):
        self.srv = srv
        self.commit_port = commit_port
        self.api = f"http://127.0.0.1:{srv.http_port}/api/v1"
        self.admin = srv.session(scope="read,write,delete,admin")
        create_users(self.admin, self.api, PASSWORD)
        self.tech = self.login("tech")
        self.alice = self.login("alice")
        self.bob = self.login("bob")
        self.carl = self.login("carl")

    def login(self, user: str, tenant: str = "default") -> requests.Session:
        return cookie_session(self.api, user, PASSWORD, tenant)

    def url(self, path: str) -> str:
        return f"{self.api}/ris{path}"

    def order(self, who: requests.Session, oid: str) -> dict:
        r = who.get(self.url(f"/orders/{oid}"))
        assert r.status_code == 200, r.text
        return r.json()

    def wait_state(self, oid: str, state: str, timeout: float = 15) -> dict:
        end = time.time() + timeout
        o = {}
        while time.time() < end:
            o = self.order(self.tech, oid)
            if o["state"] == state:
                return o
            time.sleep(0.2)
        raise AssertionError(f"order {oid} is {o.get('state')}, not {state}")


def problem(r: requests.Response, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:400])
    assert r.headers["Content-Type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert body["status"] == status and body["detail"], body
    return body


@pytest.fixture(scope="module")
def ris(tmp_path_factory):
    commit_port = free_port()
    extra = f"""
[[remote_aes]]
ae_title = "CT01"
tenant = "default"

[[remote_aes]]
ae_title = "MODSC"
tenant = "default"
host = "127.0.0.1"
port = {commit_port}
storage_commitment_new_association = true
"""
    srv = Server(tmp_path_factory.mktemp("ris"), extra_config=extra)
    srv.start()
    env = Ris(srv, commit_port)
    a = env.admin
    r = a.put(env.url("/procedures/CTCH"), json={
        "scheme": "RADRIS", "name": "CT chest", "modality": "CT", "body_part": "CHEST",
        "duration_min": 20, "preparation": "", "subspecialty": "chest"})
    assert r.status_code == 200, r.text
    r = a.post(env.url("/resources"), json={
        "kind": "modality", "name": "CT 1", "modality": "CT", "ae_title": "CT01",
        "station_name": "CT01-STATION", "site": "main", "open_from": "00:00", "open_to": "24:00"})
    assert r.status_code == 201, r.text
    env.ct = r.json()
    now = dt.datetime.now(dt.timezone.utc)
    for user, subs in (("alice", ["chest"]), ("bob", ["neuro"])):
        r = a.post(env.url("/resources"), json={"kind": "staff", "name": user, "user_name": user,
                                               "subspecialties": subs})
        assert r.status_code == 201, r.text
        r = a.post(env.url("/shifts"), json={
            "resource_id": r.json()["id"],
            "starts_at": (now - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "ends_at": (now + dt.timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%SZ")})
        assert r.status_code == 201, r.text
    r = a.put(env.url("/routing"), json={"rules": [
        {"name": "Neuro", "body_part": "HEAD", "subspecialty": "neuro", "group": "neuro"},
        {"name": "Chest", "body_part": "CHEST", "subspecialty": "chest", "group": "body"}],
        "stat_escalation_minutes": 30})
    assert r.status_code == 200, r.text
    yield env
    srv.stop()


def new_patient(env: Ris, pid: str, name: str) -> dict:
    r = env.tech.post(env.url("/patients"), json={
        "patient_id": pid, "issuer": "HOSP", "name": name, "birth_date": "19700101", "sex": "F"})
    assert r.status_code == 201, r.text
    return r.json()


def new_order(env: Ris, patient: dict, who=None, **kw) -> dict:
    body = {"patient": patient["id"], "procedure_code": "CTCH", "priority": "routine",
            "reason": "cough", "referring_physician": "Hansen^Kari", **kw}
    r = (who or env.tech).post(env.url("/orders"), json=body)
    assert r.status_code == 201, r.text
    return r.json()


def ct_files(tmp: Path, n: int, study_uid: str, patient: dict, accession: str) -> list[Path]:
    series_uid = generate_uid()
    files = []
    for i in range(n):
        ds = Dataset()
        ds.SOPClassUID = CT_STORAGE
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.PatientID = patient["patient_id"]
        ds.PatientName = patient["name"]
        ds.AccessionNumber = accession
        ds.Modality = "CT"
        ds.StudyDate = DA
        ds.StudyTime = "020500"
        ds.SeriesNumber = 1
        ds.InstanceNumber = i + 1
        ds.Rows = ds.Columns = 8
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = bytes(128)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CT_STORAGE
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        f = tmp / f"ct{i}.dcm"
        ds.save_as(f, enforce_file_format=True)
        files.append(f)
    return files


def storescu(env: Ris, files: list[Path], aet: str = "CT01"):
    cp = subprocess.run(["/usr/bin/storescu", "-aet", aet, "-aec", dimse.SERVER_AET, "127.0.0.1",
                         str(env.srv.port), *map(str, files)], capture_output=True, text=True,
                        timeout=60, env=dcmtk_env())
    assert cp.returncode == 0, cp.stdout + cp.stderr


def findscu_worklist(env: Ris, out: Path, *keys: str, aet: str = "CT01"):
    out.mkdir(parents=True, exist_ok=True)
    args = ["/usr/bin/findscu", "-v", "-W", "-aet", aet, "-aec", dimse.SERVER_AET, "-X", "-od", str(out)]
    for k in keys:
        args += ["-k", k]
    cp = subprocess.run([*args, "127.0.0.1", str(env.srv.port)], capture_output=True,
                        text=True, timeout=60, env=dcmtk_env())
    answers = [pydicom.dcmread(f) for f in sorted(out.glob("rsp*.dcm"))]
    return cp, answers


SPS = "ScheduledProcedureStepSequence[0]"


def mpps_dataset(order: dict, status: str, step_id: str) -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ref = Dataset()
    ref.AccessionNumber = order["accession"]
    ref.ScheduledProcedureStepID = step_id
    ref.RequestedProcedureID = order["accession"]
    ref.StudyInstanceUID = order["study_uid"]
    ds.ScheduledStepAttributesSequence = [ref]
    ds.PatientID = order["patient"]["patient_id"]
    ds.PerformedStationAETitle = "CT01"
    ds.Modality = "CT"
    ds.PerformedProcedureStepStartDate = DA
    ds.PerformedProcedureStepStartTime = "020000"
    ds.PerformedProcedureStepID = "PPS1"
    return ds


def mpps(env: Ris, mpps_uid: str, ds: Dataset, create: bool):
    ae = AE(ae_title="CT01")
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate("127.0.0.1", env.srv.port, ae_title=dimse.SERVER_AET)
    assert assoc.is_established
    try:
        if create:
            status, _ = assoc.send_n_create(ds, ModalityPerformedProcedureStep, mpps_uid)
        else:
            status, _ = assoc.send_n_set(ds, ModalityPerformedProcedureStep, mpps_uid)
    finally:
        assoc.release()
    return status


def commitment_request(uids: list[str], transaction: str) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = transaction
    refs = []
    for u in uids:
        r = Dataset()
        r.ReferencedSOPClassUID = CT_STORAGE
        r.ReferencedSOPInstanceUID = u
        refs.append(r)
    ds.ReferencedSOPSequence = refs
    return ds


def test_an_order_walks_its_workflow_with_a_simulated_modality(ris, tmp_path):
    env = ris
    patient = new_patient(env, "E2E-001", "Walker^Joan")
    order = new_order(env, patient)
    assert order["state"] == "ordered" and order["accession"] and order["study_uid"]

    # bad input changes nothing: unknown procedure, unknown patient
    problem(env.tech.post(env.url("/orders"), json={
        "patient": patient["id"], "procedure_code": "NOPE", "priority": "routine"}), 422)
    problem(env.tech.post(env.url("/orders"), json={
        "patient": "no-such-patient", "procedure_code": "CTCH", "priority": "routine"}), 422)

    # book it at 02:00 today; a second order in the same slot is a conflict
    r = env.tech.post(env.url("/appointments"), json={
        "order_id": order["id"], "resource_id": env.ct["id"], "starts_at": at(2)})
    assert r.status_code == 201, r.text
    appt = r.json()
    assert appt["state"] == "booked" and appt["ends_at"] == at(2, 20)
    other = new_order(env, patient)
    body = problem(env.tech.post(env.url("/appointments"), json={
        "order_id": other["id"], "resource_id": env.ct["id"], "starts_at": at(2, 10)}), 409)
    assert [c["id"] for c in body["conflicts"]] == [appt["id"]], body
    assert env.order(env.tech, other["id"])["state"] == "ordered"
    assert env.order(env.tech, order["id"])["state"] == "scheduled"

    # the modality reads its worklist (dcmtk findscu -W)
    cp, answers = findscu_worklist(
        env, tmp_path / "mwl", f"{SPS}.ScheduledStationAETitle=CT01",
        f"{SPS}.ScheduledProcedureStepStartDate={DA}", f"{SPS}.Modality",
        f"{SPS}.ScheduledProcedureStepID", f"{SPS}.ScheduledProcedureStepStartTime",
        "PatientName", "PatientID", "AccessionNumber", "StudyInstanceUID",
        "RequestedProcedureDescription", "RequestedProcedurePriority")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    mine = [a for a in answers if a.AccessionNumber == order["accession"]]
    assert len(mine) == 1, [a.AccessionNumber for a in answers]
    item = mine[0]
    assert item.PatientID == "E2E-001" and str(item.PatientName) == "Walker^Joan"
    assert item.StudyInstanceUID == order["study_uid"]
    assert item.RequestedProcedureDescription == "CT chest"
    step = item.ScheduledProcedureStepSequence[0]
    assert step.ScheduledStationAETitle == "CT01" and step.Modality == "CT"
    assert step.ScheduledProcedureStepStartDate == DA
    assert step.ScheduledProcedureStepStartTime.startswith("0200")
    step_id = step.ScheduledProcedureStepID
    assert step_id == appt["step_id"]
    # a key the modality did not ask for is not returned
    assert "ReasonForTheRequestedProcedure" not in item

    # the patient arrives
    r = env.tech.post(env.url(f"/appointments/{appt['id']}/arrive"))
    assert r.status_code == 200, r.text
    assert env.order(env.tech, order["id"])["state"] == "arrived"

    # MPPS N-CREATE: in progress
    mpps_uid = generate_uid()
    assert mpps(env, mpps_uid, mpps_dataset(order, "IN PROGRESS", step_id), True).Status == 0
    assert env.order(env.tech, order["id"])["state"] == "in_progress"

    # the images (storescu), then storage commitment on the same association
    files = ct_files(tmp_path, 3, order["study_uid"], patient, order["accession"])
    storescu(env, files)
    sops = [str(pydicom.dcmread(f).SOPInstanceUID) for f in files]
    reports = []

    def on_report(event):
        reports.append(event.event_information)
        return 0x0000, None

    ae = AE(ae_title="CT01")
    ae.add_requested_context(StorageCommitmentPushModel)
    assoc = ae.associate("127.0.0.1", env.srv.port, ae_title=dimse.SERVER_AET,
                         evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
    assert assoc.is_established
    transaction = generate_uid()
    missing = generate_uid()
    status, _ = assoc.send_n_action(commitment_request(sops + [missing], transaction), 1,
                                    StorageCommitmentPushModel, COMMITMENT_INSTANCE)
    assert status.Status == 0
    end = time.time() + 15
    while not reports and time.time() < end:
        time.sleep(0.1)
    assoc.release()
    assert reports, "no N-EVENT-REPORT on the same association"
    rep = reports[0]
    assert rep.TransactionUID == transaction
    assert sorted(x.ReferencedSOPInstanceUID for x in rep.ReferencedSOPSequence) == sorted(sops)
    assert [x.ReferencedSOPInstanceUID for x in rep.FailedSOPSequence] == [missing]
    assert rep.FailedSOPSequence[0].FailureReason == 0x0112

    # MPPS N-SET COMPLETED: images complete, routed to the chest radiologist on shift
    assert mpps(env, mpps_uid, mpps_dataset(order, "COMPLETED", step_id), False).Status == 0
    o = env.wait_state(order["id"], "images_complete")
    assert o["study_uid"] == order["study_uid"]
    assert o["assigned_to"] == "alice" and o["assigned_group"] == "body", o
    assert "rule 'Chest'" in o["assignment_reason"], o["assignment_reason"]
    # a completed MPPS cannot change again
    assert mpps(env, mpps_uid, mpps_dataset(order, "DISCONTINUED", step_id), False).Status == 0x0110

    # reading worklists: alice has it under "mine"; bob does not; one reader at a time
    ids = lambda r: [x["id"] for x in r.json()["items"]]  # noqa: E731
    r = env.alice.get(env.url("/reading"), params={"scope": "mine"})
    assert r.status_code == 200 and order["id"] in ids(r), r.text
    r = env.bob.get(env.url("/reading"), params={"scope": "mine"})
    assert order["id"] not in ids(r)
    r = env.bob.get(env.url("/reading"), params={"scope": "group:body", "modality": "CT"})
    assert order["id"] in ids(r)
    problem(env.alice.post(env.url(f"/orders/{order['id']}/transition"),
                           json={"to": "preliminary"}), 409)  # claim first
    assert env.alice.post(env.url(f"/reading/{order['id']}/claim")).status_code == 200
    body = problem(env.bob.post(env.url(f"/reading/{order['id']}/claim")), 409)
    assert "alice" in body["detail"]
    # a technologist may not report
    problem(env.tech.post(env.url(f"/orders/{order['id']}/transition"), json={"to": "final"}), 403)
    for to in ("preliminary", "final"):
        r = env.alice.post(env.url(f"/orders/{order['id']}/transition"), json={"to": to})
        assert r.status_code == 200, r.text
    o = env.order(env.tech, order["id"])
    assert o["state"] == "final" and o["times"]["final"]
    walk = [h["to"] for h in o["history"]]
    assert walk == ["ordered", "scheduled", "arrived", "in_progress", "images_complete",
                    "preliminary", "final"], walk
    assert o["history"][4]["actor"] == "ae:CT01"
    # an illegal transition is refused and changes nothing
    problem(env.tech.post(env.url(f"/orders/{order['id']}/transition"),
                          json={"to": "in_progress"}), 409)
    assert env.order(env.tech, order["id"])["state"] == "final"

    # every transition is in the audit log
    r = env.admin.get(f"{env.api}/audit", params={"action": "ris.order.transition",
                                                   "resource": order["id"], "limit": 100})
    assert r.status_code == 200, r.text
    details = [e["detail"] for e in r.json()]
    assert any("images_complete -> preliminary" in d for d in details), details
    assert any("arrived -> in_progress" in d for d in details), details

    # the analytics count it
    r = env.alice.get(env.url("/analytics"))
    assert r.status_code == 200, r.text
    ct = [m for m in r.json()["turnaround"]["by_modality"] if m["modality"] == "CT"]
    assert ct and ct[0]["n"] >= 1 and ct[0]["order_to_final_min"] is not None, r.json()


def test_storage_commitment_report_on_a_new_association(ris, tmp_path):
    env = ris
    patient = new_patient(env, "E2E-SC", "Commit^Carla")
    files = ct_files(tmp_path, 2, generate_uid(), patient, "")
    storescu(env, files, aet="MODSC")
    sops = [str(pydicom.dcmread(f).SOPInstanceUID) for f in files]
    got = threading.Event()
    reports = []

    def on_report(event):
        reports.append(event.event_information)
        got.set()
        return 0x0000, None

    listener = AE(ae_title="MODSC")
    listener.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)
    server = listener.start_server(("127.0.0.1", env.commit_port), block=False,
                                   evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
    try:
        ae = AE(ae_title="MODSC")
        ae.add_requested_context(StorageCommitmentPushModel)
        assoc = ae.associate("127.0.0.1", env.srv.port, ae_title=dimse.SERVER_AET)
        assert assoc.is_established
        transaction = generate_uid()
        status, _ = assoc.send_n_action(commitment_request(sops, transaction), 1,
                                        StorageCommitmentPushModel, COMMITMENT_INSTANCE)
        assoc.release()
        assert status.Status == 0
        assert got.wait(30), "no N-EVENT-REPORT on a new association\n" + env.srv.log_tail()
        rep = reports[0]
        assert rep.TransactionUID == transaction
        assert sorted(x.ReferencedSOPInstanceUID for x in rep.ReferencedSOPSequence) == sorted(sops)
        assert "FailedSOPSequence" not in rep or len(rep.FailedSOPSequence) == 0
    finally:
        server.shutdown()


def test_bad_modality_input_gets_clear_statuses(ris, tmp_path):
    env = ris
    # MPPS for an unknown step, N-SET of an unknown MPPS
    fake = {"accession": "NO-SUCH", "study_uid": generate_uid(),
            "patient": {"patient_id": "X"}}
    assert mpps(env, generate_uid(), mpps_dataset(fake, "IN PROGRESS", "SPS9999999"),
                True).Status == 0x0110
    assert mpps(env, generate_uid(), mpps_dataset(fake, "COMPLETED", "SPS9999999"),
                False).Status == 0x0112
    # a worklist query with a malformed date key
    cp, answers = findscu_worklist(env, tmp_path / "bad", f"{SPS}.ScheduledStationAETitle=CT01",
                                   f"{SPS}.ScheduledProcedureStepStartDate=2026-13-99",
                                   "PatientName")
    assert answers == []
    text = (cp.stdout + cp.stderr).lower()
    assert "a900" in text or "does not match" in text or "identifier" in text, text


def test_deflated_n_service_data_sets_inflate_within_their_own_bound(ris):
    """An N-CREATE/N-SET/N-ACTION data set may be several MiB (a large commitment request):
    deflated, it is inflated up to 32 MiB, not the 1 MiB of a query identifier, and refused
    (0x0106) past that, without inflating the rest."""
    env = ris
    fake = {"accession": "NO-SUCH", "study_uid": generate_uid(), "patient": {"patient_id": "X"}}

    def create(padding: int) -> int:
        ds = mpps_dataset(fake, "IN PROGRESS", "SPS9999999")
        ds.add_new(0x00091010, "OB", b"\0" * padding)  # zeros: a few KiB once deflated
        ae = AE(ae_title="CT01")
        ae.add_requested_context(ModalityPerformedProcedureStep,
                                 [DeflatedExplicitVRLittleEndian])
        assoc = ae.associate("127.0.0.1", env.srv.port, ae_title=dimse.SERVER_AET)
        assert assoc.is_established
        try:
            status, _ = assoc.send_n_create(ds, ModalityPerformedProcedureStep, generate_uid())
        finally:
            assoc.release()
        return status.Status

    # inflated whole, then refused for what it says: the step is unknown
    assert create(3 << 20) == 0x0110
    # over the bound: refused as it is inflated
    assert create(40 << 20) == 0x0106


def test_unmatched_studies_wait_for_reconciliation(ris, tmp_path):
    env = ris
    patient = new_patient(env, "E2E-REC", "Recon^Rita")
    order = new_order(env, patient)
    r = env.tech.post(env.url("/appointments"), json={
        "order_id": order["id"], "resource_id": env.ct["id"], "starts_at": at(5)})
    assert r.status_code == 201, r.text
    # the modality got the patient wrong and sent no accession number
    study = generate_uid()
    wrong = {"patient_id": "TYPO-42", "name": "Recon^R"}
    storescu(env, ct_files(tmp_path, 2, study, wrong, ""))
    end = time.time() + 15
    items = []
    while time.time() < end:
        items = env.tech.get(env.url("/reconciliation")).json()["items"]
        if any(i["study_uid"] == study for i in items):
            break
        time.sleep(0.2)
    entry = next(i for i in items if i["study_uid"] == study)
    assert "no accession number" in entry["reason"] and entry["patient_id"] == "TYPO-42"
    # radiologists cannot correct the archive
    problem(env.alice.post(env.url(f"/reconciliation/{study}/resolve"),
                           json={"order_id": order["id"]}), 403)
    r = env.tech.post(env.url(f"/reconciliation/{study}/resolve"), json={"order_id": order["id"]})
    assert r.status_code == 200, r.text
    assert r.json()["study_uid"] == study and r.json()["state"] == "in_progress"
    # the archive files the study under the order's patient and accession
    r = env.admin.get(f"{env.srv.dicomweb}/studies", params={"StudyInstanceUID": study})
    assert r.status_code == 200, r.text
    found = r.json()[0]
    assert found["00100020"]["Value"] == ["E2E-REC"]
    assert found["00080050"]["Value"] == [order["accession"]]
    assert all(i["study_uid"] != study for i in env.tech.get(env.url("/reconciliation")).json()["items"])
    r = env.admin.get(f"{env.api}/audit", params={"action": "ris.reconcile.resolve", "resource": study})
    assert r.status_code == 200 and r.json(), r.text


def test_patient_merge_moves_orders_and_archived_studies(ris, tmp_path):
    env = ris
    keep = new_patient(env, "E2E-KEEP", "Merge^Mona")
    dup = new_patient(env, "E2E-DUP", "Merge^M")
    order = new_order(env, dup)
    study = generate_uid()
    storescu(env, ct_files(tmp_path, 1, study, dup, "MERGEACC"))
    time.sleep(0.5)
    r = env.tech.post(env.url(f"/patients/{dup['id']}/merge"), json={"into": keep["id"]})
    assert r.status_code == 200, r.text
    assert r.json()["orders_moved"] == 1 and r.json()["studies_moved"] == 1, r.json()
    assert env.order(env.tech, order["id"])["patient"]["patient_id"] == "E2E-KEEP"
    r = env.admin.get(f"{env.srv.dicomweb}/studies", params={"StudyInstanceUID": study})
    assert r.json()[0]["00100020"]["Value"] == ["E2E-KEEP"]
    r = env.tech.get(env.url("/patients"), params={"q": "MERGE"})
    assert [p["patient_id"] for p in r.json()["items"]] == ["E2E-KEEP"]
    problem(env.tech.post(env.url(f"/patients/{dup['id']}/merge"), json={"into": keep["id"]}), 409)


def test_roles_and_tenants(ris):
    env = ris
    patient = new_patient(env, "E2E-ROLE", "Role^Rob")
    # a referring physician places orders and sees only their own
    mine = new_order(env, patient, who=env.carl, referring_physician="")
    theirs = new_order(env, patient)
    r = env.carl.get(env.url("/orders"))
    assert r.status_code == 200, r.text
    got = [o["id"] for o in r.json()["items"]]
    assert mine["id"] in got and theirs["id"] not in got
    problem(env.carl.get(env.url(f"/orders/{theirs['id']}")), 404)
    # …but cannot schedule, configure or read cases
    problem(env.carl.post(env.url("/appointments"), json={
        "order_id": mine["id"], "resource_id": env.ct["id"], "starts_at": at(9)}), 403)
    problem(env.carl.put(env.url("/routing"), json={"rules": []}), 403)
    problem(env.tech.put(env.url("/procedures/XX"), json={
        "name": "x", "modality": "CT", "duration_min": 10}), 403)
    # another tenant sees none of it, over REST and over the worklist
    other = env.srv.session(tenant="other", scope="read,write,delete,admin")
    r = other.get(env.url("/orders"))
    assert r.status_code == 200 and r.json()["items"] == [], r.text
    assert other.get(env.url(f"/orders/{mine['id']}")).status_code == 404
    assert other.get(env.url("/patients")).json()["items"] == []
    assert other.post(env.url(f"/reading/{mine['id']}/claim")).status_code in (403, 404, 409)
    ae = AE(ae_title=dimse.OTHERSCU)
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", env.srv.port, ae_title=dimse.SERVER_AET)
    assert assoc.is_established
    q = Dataset()
    q.PatientName = ""
    q.AccessionNumber = ""
    sps = Dataset()
    sps.ScheduledStationAETitle = ""
    sps.Modality = ""
    q.ScheduledProcedureStepSequence = [sps]
    results = [ds for st, ds in assoc.send_c_find(q, ModalityWorklistInformationFind)
               if st and st.Status in (0xFF00, 0xFF01)]
    assoc.release()
    assert results == []


def test_auto_scheduler_books_a_batch_stat_first_without_overlaps(ris):
    env = ris
    patient = new_patient(env, "E2E-AUTO", "Auto^Alex")
    prios = ("routine", "routine", "stat", "urgent", "routine")
    ids = [new_order(env, patient, priority=p)["id"] for p in prios]
    day = TODAY + dt.timedelta(days=1)
    r = env.tech.post(env.url("/schedule/auto"), json={
        "order_ids": ids + ["no-such-order"], "from": f"{day.isoformat()}T00:00:00Z",
        "to": f"{(day + dt.timedelta(days=1)).isoformat()}T00:00:00Z"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert sorted(a["order_id"] for a in out["placed"]) == sorted(ids), out
    assert [u["order_id"] for u in out["unplaced"]] == ["no-such-order"], out["unplaced"]
    for key in ("utilisation", "mean_wait_min", "stat_mean_wait_min", "objective"):
        assert key in out["metrics"] and key in out["first_fit"], out
    placed = sorted(out["placed"], key=lambda a: a["starts_at"])
    assert placed[0]["priority"] == "stat", placed
    for a, b in zip(placed, placed[1:]):
        assert a["ends_at"] <= b["starts_at"], (a, b)
    for oid in ids:
        assert env.order(env.tech, oid)["state"] == "scheduled"
    # the same batch again: nothing left in state ordered
    r = env.tech.post(env.url("/schedule/auto"), json={"order_ids": ids})
    assert r.status_code == 200 and r.json()["placed"] == [], r.text
