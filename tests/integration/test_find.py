"""C-FIND matching semantics (pynetdicom) and tenant isolation."""
import pytest
from pydicom.uid import generate_uid

import dimse
from dimse import OTHERSCU, TESTSCU, find, make_query


class Fixture:
    pass


@pytest.fixture(scope="module")
def db(server):
    """Four studies of three patients, stored by TESTSCU.

    DOE1 Doe^John   study A 20190315 CT (2 instances)   ACC1001
    DOE1 Doe^John   study B 20200610 MR (1 instance)    ACC1002
    DOE2 DOE^Jane   study C 20201231 CT (2) + MR (1)    ACC1003
    SMI3 Smith^Anna study D 20210101 MR (1 instance)    ACC2004
    """
    f = Fixture()
    f.A, f.B, f.C, f.D = (generate_uid() for _ in range(4))
    f.series = {}
    f.instances = []
    plan = [
        ("Doe^John", "DOE1", f.A, "20190315", "ACC1001", [("CT", 2)]),
        ("Doe^John", "DOE1", f.B, "20200610", "ACC1002", [("MR", 1)]),
        ("DOE^Jane", "DOE2", f.C, "20201231", "ACC1003", [("CT", 2), ("MR", 1)]),
        ("Smith^Anna", "SMI3", f.D, "20210101", "ACC2004", [("MR", 1)]),
    ]
    for name, pid, study, date, acc, series in plan:
        for sn, (mod, n) in enumerate(series, 1):
            se = generate_uid()
            f.series[(study, mod)] = se
            for i in range(n):
                ds = dimse.make_image(name, pid, study, se, modality=mod, study_date=date,
                                      accession=acc, series_number=sn, instance_number=i + 1)
                st, note = dimse.store_dataset(server.port, ds)
                assert st == 0x0000, f"store failed: {st!r} {note}"
                f.instances.append(ds)
    return f


def uids(results, kw="StudyInstanceUID"):
    return sorted(str(r.get(kw, "")) for r in results)


def test_patient_level_pn_wildcard_case_insensitive(server, db):
    rs = find(server.port, make_query("PATIENT", PatientName="doe*", PatientID="",
                                      NumberOfPatientRelatedStudies=""), "patient")
    assert uids(rs, "PatientID") == ["DOE1", "DOE2"]
    by_id = {r.PatientID: r for r in rs}
    assert int(by_id["DOE1"].NumberOfPatientRelatedStudies) == 2
    assert int(by_id["DOE2"].NumberOfPatientRelatedStudies) == 1
    for r in rs:
        assert r.QueryRetrieveLevel == "PATIENT"
        assert "PatientName" in r


def test_pn_single_value_case_insensitive(server, db):
    rs = find(server.port, make_query("STUDY", PatientName="doe^jane", StudyInstanceUID=""))
    assert uids(rs) == [db.C]


def test_study_date_range(server, db):
    rs = find(server.port, make_query("STUDY", StudyDate="20200101-20201231",
                                      StudyInstanceUID=""))
    assert uids(rs) == sorted([db.B, db.C])


def test_study_date_open_ranges(server, db):
    rs = find(server.port, make_query("STUDY", StudyDate="-20191231", StudyInstanceUID=""))
    assert uids(rs) == [db.A]
    rs = find(server.port, make_query("STUDY", StudyDate="20201231-", StudyInstanceUID=""))
    assert uids(rs) == sorted([db.C, db.D])
    rs = find(server.port, make_query("STUDY", StudyDate="20190315", StudyInstanceUID=""))
    assert uids(rs) == [db.A]


def test_study_universal(server, db):
    rs = find(server.port, make_query("STUDY", StudyInstanceUID=""))
    assert uids(rs) == sorted([db.A, db.B, db.C, db.D])


def test_study_uid_list(server, db):
    rs = find(server.port, make_query("STUDY", StudyInstanceUID=f"{db.A}\\{db.D}",
                                      PatientID=""))
    assert uids(rs) == sorted([db.A, db.D])
    assert sorted(r.PatientID for r in rs) == ["DOE1", "SMI3"]


def test_question_mark_wildcard(server, db):
    rs = find(server.port, make_query("STUDY", PatientName="Sm?th^Anna", StudyInstanceUID=""))
    assert uids(rs) == [db.D]
    rs = find(server.port, make_query("STUDY", AccessionNumber="ACC100?", StudyInstanceUID=""))
    assert uids(rs) == sorted([db.A, db.B, db.C])


def test_study_level_return_keys(server, db):
    rs = find(server.port, make_query(
        "STUDY", StudyInstanceUID=db.C, PatientName="", PatientID="", StudyDate="",
        AccessionNumber="", ModalitiesInStudy="", NumberOfStudyRelatedSeries="",
        NumberOfStudyRelatedInstances=""))
    assert len(rs) == 1
    r = rs[0]
    assert r.QueryRetrieveLevel == "STUDY"
    assert r.StudyInstanceUID == db.C
    assert str(r.PatientName).upper() == "DOE^JANE"
    assert r.PatientID == "DOE2"
    assert r.StudyDate == "20201231"
    assert r.AccessionNumber == "ACC1003"
    mods = r.ModalitiesInStudy
    mods = [mods] if isinstance(mods, str) else list(mods)
    assert sorted(mods) == ["CT", "MR"]
    assert int(r.NumberOfStudyRelatedSeries) == 2
    assert int(r.NumberOfStudyRelatedInstances) == 3


def test_patient_root_study_level(server, db):
    rs = find(server.port, make_query("STUDY", PatientID="DOE1", StudyInstanceUID="",
                                      StudyDate=""), "patient")
    assert uids(rs) == sorted([db.A, db.B])
    assert sorted(r.StudyDate for r in rs) == ["20190315", "20200610"]


def test_series_by_modality(server, db):
    rs = find(server.port, make_query("SERIES", StudyInstanceUID=db.C, Modality="MR",
                                      SeriesInstanceUID="", NumberOfSeriesRelatedInstances=""))
    assert uids(rs, "SeriesInstanceUID") == [db.series[(db.C, "MR")]]
    assert int(rs[0].NumberOfSeriesRelatedInstances) == 1
    rs = find(server.port, make_query("SERIES", StudyInstanceUID=db.C, Modality="CT",
                                      SeriesInstanceUID="", NumberOfSeriesRelatedInstances=""))
    assert uids(rs, "SeriesInstanceUID") == [db.series[(db.C, "CT")]]
    assert int(rs[0].NumberOfSeriesRelatedInstances) == 2


def test_image_by_sop_instance_uid(server, db):
    ds = db.instances[1]
    rs = find(server.port, make_query("IMAGE", StudyInstanceUID=ds.StudyInstanceUID,
                                      SeriesInstanceUID=ds.SeriesInstanceUID,
                                      SOPInstanceUID=ds.SOPInstanceUID, SOPClassUID="",
                                      InstanceNumber=""))
    assert len(rs) == 1
    assert rs[0].SOPInstanceUID == ds.SOPInstanceUID
    assert rs[0].SOPClassUID == ds.SOPClassUID
    assert int(rs[0].InstanceNumber) == int(ds.InstanceNumber)
    # all images of the CT series of study C
    se = db.series[(db.C, "CT")]
    rs = find(server.port, make_query("IMAGE", StudyInstanceUID=db.C, SeriesInstanceUID=se,
                                      SOPInstanceUID=""))
    want = sorted(d.SOPInstanceUID for d in db.instances if d.SeriesInstanceUID == se)
    assert uids(rs, "SOPInstanceUID") == want and len(want) == 2


def test_no_match(server, db):
    assert find(server.port, make_query("STUDY", PatientName="Nobody*",
                                        StudyInstanceUID="")) == []


def test_tenant_isolation(server, db):
    # OTHERSCU sees nothing of TESTSCU's data
    assert find(server.port, make_query("STUDY", StudyInstanceUID=""), aet=OTHERSCU) == []
    assert find(server.port, make_query("PATIENT", PatientID="", PatientName="*"), "patient",
                aet=OTHERSCU) == []
    assert find(server.port, make_query("STUDY", StudyInstanceUID=db.C), aet=OTHERSCU) == []
    ds0 = db.instances[0]
    st, rec, _ = dimse.get(server.port, make_query("STUDY", StudyInstanceUID=db.A),
                           [(ds0.SOPClassUID, "1.2.840.10008.1.2.1")], aet=OTHERSCU)
    assert rec == {}, "OTHERSCU retrieved TESTSCU's instances via C-GET"
    scp = dimse.StoreSCP(OTHERSCU, server.other_move_port)
    try:
        dimse.move(server.port, make_query("STUDY", StudyInstanceUID=db.A), OTHERSCU,
                   aet=OTHERSCU)
    finally:
        scp.close()
    assert scp.received == {}, "OTHERSCU retrieved TESTSCU's instances via C-MOVE"

    # OTHERSCU stores its own study; only OTHERSCU sees it
    other = dimse.make_image("Doe^Other", "OTH1", modality="CT", study_date="20200505")
    st, note = dimse.store_dataset(server.port, other, aet=OTHERSCU)
    assert st == 0x0000, (st, note)
    rs = find(server.port, make_query("STUDY", StudyInstanceUID=""), aet=OTHERSCU)
    assert uids(rs) == [other.StudyInstanceUID]
    rs = find(server.port, make_query("STUDY", StudyInstanceUID=""), aet=TESTSCU)
    assert uids(rs) == sorted([db.A, db.B, db.C, db.D])
    rs = find(server.port, make_query("PATIENT", PatientName="doe*", PatientID=""), "patient")
    assert uids(rs, "PatientID") == ["DOE1", "DOE2"]


def _level_keys(db, level: str) -> list[dict]:
    """Identifiers of tenant A's data at `level`: universal and by each exact id."""
    ds = db.instances[0]
    by = {
        "PATIENT": [dict(PatientID=""), dict(PatientID=str(ds.PatientID))],
        "STUDY": [dict(StudyInstanceUID=""), dict(StudyInstanceUID=db.A),
                  dict(StudyInstanceUID="", AccessionNumber="*")],
        "SERIES": [dict(StudyInstanceUID=db.A, SeriesInstanceUID=""),
                   dict(StudyInstanceUID=db.A, SeriesInstanceUID=str(ds.SeriesInstanceUID))],
        "IMAGE": [dict(StudyInstanceUID=db.A, SeriesInstanceUID=str(ds.SeriesInstanceUID),
                       SOPInstanceUID=""),
                  dict(StudyInstanceUID=db.A, SeriesInstanceUID=str(ds.SeriesInstanceUID),
                       SOPInstanceUID=str(ds.SOPInstanceUID))],
    }
    return by[level]


# every DIMSE query/retrieve service × information model × level: generated, so a new level
# or model added to the tables above is covered automatically
DIMSE_MATRIX = [(svc, model, level)
                for svc in ("find", "get", "move")
                for model in ("patient", "study")
                for level in ("PATIENT", "STUDY", "SERIES", "IMAGE")
                if not (model == "study" and level == "PATIENT")]


@pytest.mark.parametrize("svc,model,level", DIMSE_MATRIX)
def test_cross_tenant_dimse_matrix(server, db, svc, model, level):
    """OTHERSCU (tenant `other`) asks for tenant `default`'s data every way DIMSE allows."""
    ds0 = db.instances[0]
    # what belongs to tenant `default` (universal queries may return `other`'s own data)
    mine = {str(d.SOPInstanceUID) for d in db.instances}
    mine |= {str(d.StudyInstanceUID) for d in db.instances}
    mine |= {str(d.SeriesInstanceUID) for d in db.instances}
    mine |= {str(d.PatientID) for d in db.instances}

    def leaked(identifiers):
        return [v for ds in identifiers for kw in ("PatientID", "StudyInstanceUID",
                "SeriesInstanceUID", "SOPInstanceUID") if str(ds.get(kw, "")) in mine
                for v in [str(ds.get(kw))]]

    for keys in _level_keys(db, level):
        if model == "patient" and level != "PATIENT":
            keys = dict(keys, PatientID=str(ds0.PatientID))
        q = make_query(level, **keys)
        if svc == "find":
            assert leaked(find(server.port, q, model, aet=OTHERSCU)) == [], (model, level, keys)
            # and the owner does see it (the query is not simply wrong)
            assert leaked(find(server.port, q, model, aet=TESTSCU)), (model, level, keys)
        elif svc == "get":
            st, rec, _ = dimse.get(server.port, q, [(ds0.SOPClassUID, "1.2.840.10008.1.2.1")],
                                   model, aet=OTHERSCU)
            assert not set(rec) & mine, (model, level, keys)
        else:
            scp = dimse.StoreSCP(OTHERSCU, server.other_move_port)
            try:
                dimse.move(server.port, q, OTHERSCU, model, aet=OTHERSCU)
            finally:
                scp.close()
            assert not set(scp.received) & mine, (model, level, keys)


# ---------------------------------------------------------------- retrieve keys and statuses
def _modality_class(db, modality: str) -> str:
    return next(str(d.SOPClassUID) for d in db.instances if d.Modality == modality)


def test_retrieve_needs_the_unique_key_of_its_level(server, db):
    """PS3.4 C.4.2.2.1 / C.4.3.2.1: a C-GET/C-MOVE selects by unique keys; an empty or missing
    one is refused (A900), never read as "everything"."""
    ct = _modality_class(db, "CT")
    for keys in (dict(StudyInstanceUID=""), dict(PatientName="Doe*")):
        st, rec, _ = dimse.get(server.port, make_query("STUDY", **keys),
                               [(ct, "1.2.840.10008.1.2.1")])
        assert (st, rec) == (0xA900, {}), (keys, st and hex(st))
    st, rec, _ = dimse.get(server.port, make_query("SERIES", StudyInstanceUID=db.A,
                                                   SeriesInstanceUID=""),
                           [(ct, "1.2.840.10008.1.2.1")])
    assert (st, rec) == (0xA900, {})
    scp = dimse.StoreSCP(TESTSCU, server.move_port)
    try:
        st, _ = dimse.move(server.port, make_query("STUDY", StudyInstanceUID=""), TESTSCU)
    finally:
        scp.close()
    assert st == 0xA900 and scp.received == {}


def test_retrieve_ignores_keys_that_are_not_unique(server, db):
    ct = _modality_class(db, "CT")
    st, rec, _ = dimse.get(server.port, make_query("STUDY", StudyInstanceUID=db.A,
                                                   PatientName="NOBODY", Modality="XA"),
                           [(ct, "1.2.840.10008.1.2.1")])
    assert st == 0x0000 and len(rec) == 2, (st and hex(st), len(rec))


def test_retrieve_status_when_sub_operations_fail(server, db):
    """PS3.4 C.4.3.3.1: Failure when every sub-operation failed, Warning when some did."""
    ct = _modality_class(db, "CT")
    # study B holds one MR image; only CT storage is offered
    st, rec, _ = dimse.get(server.port, make_query("STUDY", StudyInstanceUID=db.B),
                           [(ct, "1.2.840.10008.1.2.1")])
    assert (st, rec) == (0xA702, {}), st and hex(st)
    # study C holds two CT images and one MR image
    st, rec, _ = dimse.get(server.port, make_query("STUDY", StudyInstanceUID=db.C),
                           [(ct, "1.2.840.10008.1.2.1")])
    assert st == 0xB000 and len(rec) == 2, (st and hex(st), len(rec))
