"""De-identification (PS3.15 Annex E) over the API and the CLI, checked with pydicom against
an independent list of the profile's X/Z/D/U attributes: none keeps its original value."""
import io
import subprocess
import zipfile

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from conftest import Server, run_radris
from dicomweb_util import stow

# Attributes whose basic-profile action in PS3.15 Table E.1-1 is X, Z, D, U or a compound of
# those (written down here independently of the server's table), with a value to plant.
ANNEX_E = {
    "AccessionNumber": "ACC-ORIG-1",
    "AcquisitionDate": "19710203",
    "AcquisitionDateTime": "19710203101112",
    "AcquisitionTime": "101112",
    "AdditionalPatientHistory": "ORIG history of the patient",
    "AdmissionID": "ADM-ORIG",
    "AdmittingDiagnosesDescription": "ORIG diagnosis",
    "ContentDate": "19710203",
    "ContentTime": "101113",
    "CountryOfResidence": "ORIGLAND",
    "DerivationDescription": "ORIG derivation",
    "DeviceSerialNumber": "SN-ORIG-77",
    "EthnicGroup": "ORIGETHNIC",
    "FrameOfReferenceUID": "1.2.826.0.1.3680043.9.7777.1.1",
    "ImageComments": "ORIG comment about Mr Smith",
    "InstanceCreationDate": "19710203",
    "InstanceCreationTime": "101114",
    "InstanceCreatorUID": "1.2.826.0.1.3680043.9.7777.1.2",
    "InstitutionAddress": "1 ORIG Street, Origtown",
    "InstitutionName": "ORIG General Hospital",
    "InstitutionalDepartmentName": "ORIG Radiology",
    "IssuerOfPatientID": "ORIG-ISSUER",
    "MedicalRecordLocator": "MRL-ORIG",
    "MilitaryRank": "ORIG Colonel",
    "NameOfPhysiciansReadingStudy": "Reader^Orig",
    "Occupation": "ORIG Occupation",
    "OperatorsName": "Operator^Orig",
    "OtherPatientIDs": "OTHER-ORIG-ID",
    "OtherPatientNames": "Other^Orig",
    "PatientAddress": "2 ORIG Road",
    "PatientAge": "045Y",
    "PatientBirthDate": "19700101",
    "PatientBirthName": "Birth^Orig",
    "PatientBirthTime": "010203",
    "PatientComments": "ORIG comments",
    "PatientID": "PID-ORIG-42",
    "PatientMotherBirthName": "Mother^Orig",
    "PatientName": "Smith^Orig",
    "PatientReligiousPreference": "ORIG religion",
    "PatientSex": "M",
    "PatientSize": "1.83",
    "PatientState": "ORIG state",
    "PatientTelephoneNumbers": "555-0199",
    "PatientWeight": "81",
    "PerformedProcedureStepDescription": "ORIG PPS",
    "PerformedProcedureStepID": "PPS-ORIG",
    "PerformedProcedureStepStartDate": "19710203",
    "PerformedProcedureStepStartTime": "101115",
    "PerformingPhysicianName": "Performer^Orig",
    "PhysiciansOfRecord": "Record^Orig",
    "PregnancyStatus": 4,
    "ProtocolName": "ORIG protocol",
    "ReferringPhysicianName": "Referrer^Orig",
    "RegionOfResidence": "ORIG region",
    "RequestingPhysician": "Requester^Orig",
    "RequestingService": "ORIG service",
    "ResponsiblePerson": "Responsible^Orig",
    "SeriesDate": "19710203",
    "SeriesDescription": "ORIG series description",
    "SeriesTime": "101116",
    "SmokingStatus": "YES",
    "StationName": "ORIG-CT-1",
    "StudyDate": "19710203",
    "StudyDescription": "ORIG study description",
    "StudyID": "STUDY-ORIG",
    "StudyTime": "101117",
    "TimezoneOffsetFromUTC": "+0100",
}
SEQUENCE_UIDS = "1.2.826.0.1.3680043.9.7777.2"


def make_instance(study: str, series: str, n: int) -> bytes:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.9.7777.3.{n}"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.Modality = "OT"
    for kw, v in ANNEX_E.items():
        setattr(ds, kw, v)
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ref.ReferencedSOPInstanceUID = f"{SEQUENCE_UIDS}.{n}"
    ds.SourceImageSequence = Sequence([ref])
    req = Dataset()
    req.RequestingPhysician = "Nested^Orig"
    req.AccessionNumber = "ACC-NESTED-ORIG"
    ds.RequestAttributesSequence = Sequence([req])
    ds.add_new(0x00091010, "LO", "ORIG private")
    ds.add_new(0x60003000, "OW", b"\x01" * 8)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 16
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.BurnedInAnnotation = "YES"
    ds.PixelData = bytes(range(100, 100 + 16)) * 16
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def original_values(ds: Dataset) -> set[str]:
    return {str(v) for v in ANNEX_E.values()}


def assert_deidentified(ds: Dataset, originals: Dataset):
    for kw, planted in ANNEX_E.items():
        el = ds.get(kw)
        if el is None or el == "" or el is None:
            continue
        assert str(el) != str(planted), f"{kw} kept its original value {planted!r}"
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert ds.get(kw) != originals.get(kw), kw
    assert ds.SOPClassUID == originals.SOPClassUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.PatientIdentityRemoved == "YES"
    assert any(c.CodeValue == "113100" for c in ds.DeidentificationMethodCodeSequence)
    # nested: the profile applies inside sequences
    for item in ds.get("SourceImageSequence", []):
        assert not str(item.ReferencedSOPInstanceUID).startswith(SEQUENCE_UIDS)
    assert "RequestAttributesSequence" not in ds or all(
        "ORIG" not in str(i.get("RequestingPhysician", "")) for i in ds.RequestAttributesSequence)
    assert 0x00091010 not in ds, "private attribute kept"
    assert 0x60003000 not in ds, "overlay kept"
    # nothing planted survives anywhere in the file
    raw = ds.to_json()
    for planted in ("ORIG", "Smith", "555-0199"):
        assert planted not in raw, planted


@pytest.fixture(scope="module")
def deid(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("deid"))
    srv.start()
    study, series = str(generate_uid()), str(generate_uid())
    files = [make_instance(study, series, n) for n in (1, 2)]
    s = srv.session(scope="read,write,admin")
    r = stow(s, srv.dicomweb, files)
    assert r.status_code == 200, r.text
    yield srv, study, files
    srv.stop()


def export(srv, study, session=None, **options):
    s = session or srv.session(scope="read,admin")
    return s.post(f"http://127.0.0.1:{srv.http_port}/api/v1/admin/studies/{study}/deidentify",
                  json=options, timeout=60)


def unzip(r) -> tuple[list[Dataset], dict]:
    import json
    z = zipfile.ZipFile(io.BytesIO(r.content))
    out = [pydicom.dcmread(io.BytesIO(z.read(n))) for n in z.namelist() if n.endswith(".dcm")]
    return out, json.loads(z.read("report.json"))


def test_basic_profile_leaves_no_original_value(deid):
    srv, study, files = deid
    r = export(srv, study, include_burned_in=True)
    assert r.status_code == 200, r.text
    got, report = unzip(r)
    assert len(got) == 2 and report["withheld"] == []
    originals = {str(pydicom.dcmread(io.BytesIO(f)).SOPInstanceUID): pydicom.dcmread(io.BytesIO(f))
                 for f in files}
    for ds in got:
        assert_deidentified(ds, next(iter(originals.values())))
    # consistent: one study and one series after remapping, references remapped alike
    assert len({d.StudyInstanceUID for d in got}) == 1
    assert len({d.SeriesInstanceUID for d in got}) == 1
    assert len({d.PatientID for d in got}) == 1
    # the same project gives the same pseudonyms; another project does not
    again, _ = unzip(export(srv, study, include_burned_in=True))
    assert {d.SOPInstanceUID for d in again} == {d.SOPInstanceUID for d in got}
    other, _ = unzip(export(srv, study, include_burned_in=True, project="trial-2"))
    assert not {d.SOPInstanceUID for d in other} & {d.SOPInstanceUID for d in got}
    assert {d.PatientID for d in other} != {d.PatientID for d in got}


def test_burned_in_is_withheld_unless_cleaned(deid):
    srv, study, _ = deid
    got, report = unzip(export(srv, study))
    assert got == [] and len(report["withheld"]) == 2
    got, report = unzip(export(srv, study, burned_in_regions=[
        {"x": 0, "y": 0, "width": 16, "height": 4}]))
    assert len(got) == 2
    for ds in got:
        px = np.frombuffer(ds.PixelData, dtype=np.uint8).reshape(16, 16)
        assert (px[:4] == px[:4].min()).all() and px[:4].max() == 100
        assert (px[4:] == np.tile(np.arange(100, 116, dtype=np.uint8), (12, 1))).all()
        assert ds.BurnedInAnnotation == "NO"


def test_options_dates_descriptors_characteristics(deid):
    srv, study, files = deid
    r = export(srv, study, include_burned_in=True, retain_dates=True, date_shift_days=-10,
               clean_descriptors=True, retain_patient_characteristics=True)
    got, _ = unzip(r)
    ds = got[0]
    assert ds.StudyDate == "19710124" and ds.SeriesDate == "19710124"
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    assert "StudyDescription" in ds and ds.StudyDescription == ""
    assert ds.PatientSex == "M"
    codes = {c.CodeValue for c in ds.DeidentificationMethodCodeSequence}
    assert {"113100", "113107", "113105", "113108"} <= codes


def test_bad_requests_and_isolation(deid):
    srv, study, _ = deid
    assert export(srv, study, date_shift_days=10**6).status_code == 400
    assert export(srv, study, burned_in_regions=[{"x": 0, "y": 0, "width": 0, "height": 1}]
                  ).status_code == 400
    assert export(srv, study, unknown_option=True).status_code in (400, 422)
    other = srv.session(tenant="other", scope="read,admin")
    assert export(srv, study, session=other).status_code == 404
    assert export(srv, study, session=srv.session(scope="read")).status_code == 403


def test_cli_matches_the_api_for_the_same_project(deid, tmp_path):
    srv, study, files = deid
    src = tmp_path / "in"
    src.mkdir()
    for n, f in enumerate(files):
        (src / f"{n}.dcm").write_bytes(f)
    (src / "junk.dcm").write_bytes(b"not dicom at all")
    out = tmp_path / "out"
    cp = run_radris("deidentify", "--data-dir", srv.data_dir, "--config", srv.config_path,
                    "--out", out, "--include-burned-in", src, env=srv.env)
    assert cp.returncode == 1, cp.stdout + cp.stderr  # the junk file is refused, not fatal
    assert "1 refused" in cp.stdout and "junk.dcm" in cp.stderr
    cli = [pydicom.dcmread(p) for p in sorted(out.glob("*.dcm"))]
    api, _ = unzip(export(srv, study, include_burned_in=True))
    assert {d.SOPInstanceUID for d in cli} == {d.SOPInstanceUID for d in api}
    for ds in cli:
        assert_deidentified(ds, pydicom.dcmread(io.BytesIO(files[0])))
