"""DCMTK command-line clients against RADRIS: echo, store 300 slices, find, get, move."""
import subprocess
from pathlib import Path

import pydicom
import pytest

import dimse
from conftest import dcmtk_env, run_radris

DCMTK = "/usr/bin"


def dcmtk(tool, *args, timeout=600, cwd=None):
    # never let a dcmtk tool write into the repository: default cwd is a temp dir
    if cwd is None:
        import tempfile
        cwd = tempfile.mkdtemp(prefix="dcmtk-")
    cmd = [f"{DCMTK}/{tool}", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=dcmtk_env(), cwd=cwd)


def conn(server, aet="TESTSCU", aec="RADRIS"):
    return ["-aet", aet, "-aec", aec, "127.0.0.1", server.port]


@pytest.fixture(scope="module")
def stored(server, ct_series):
    """Store the 300-slice series with storescu in one association."""
    cp = dcmtk("storescu", "-v", "+sd", "+sp", "*.dcm", *conn(server), ct_series.dir)
    out = cp.stdout + cp.stderr
    assert cp.returncode == 0, f"storescu rc={cp.returncode}\n{out[-3000:]}"
    n_ok = out.count("Received Store Response (Success)")
    assert n_ok == 300, f"expected 300 successful store responses, got {n_ok}\n{out[-2000:]}"
    assert out.count("Request Association") <= 1 or out.count("Association Accepted") == 1
    return ct_series


def test_echoscu(server):
    cp = dcmtk("echoscu", "-v", *conn(server))
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "Received Echo Response (Success)" in cp.stdout + cp.stderr


def test_radris_dicom_echo_smoke(server):
    cp = run_radris("dicom", "echo", "--aet", "TESTSCU", "--aec", "RADRIS", "127.0.0.1",
                    server.port, timeout=60)
    assert cp.returncode == 0, cp.stdout + cp.stderr


def test_http_endpoints(server):
    assert server.http_get("/healthz")[0] == 200
    assert server.http_get("/readyz")[0] == 200
    st, body = server.http_get("/metrics")
    assert st == 200
    assert any(l and not l.startswith("#") for l in body.splitlines()), body[:500]


def _findscu(server, tmp_path, level, keys, model="-S"):
    outdir = tmp_path / f"find_{level}_{len(list(tmp_path.iterdir()))}"
    outdir.mkdir()
    args = [model, "-X", "-od", outdir, "-k", f"QueryRetrieveLevel={level}"]
    for k in keys:
        args += ["-k", k]
    cp = dcmtk("findscu", *args, *conn(server))
    assert cp.returncode == 0, cp.stdout + cp.stderr
    return [pydicom.dcmread(p) for p in sorted(outdir.glob("rsp*.dcm"))]


def test_findscu_study(server, stored, tmp_path):
    s = stored
    rs = _findscu(server, tmp_path, "STUDY", [f"StudyInstanceUID={s.study_uid}",
                                              "NumberOfStudyRelatedInstances",
                                              "NumberOfStudyRelatedSeries",
                                              "ModalitiesInStudy", "PatientID"])
    assert len(rs) == 1
    r = rs[0]
    assert r.StudyInstanceUID == s.study_uid
    assert int(r.NumberOfStudyRelatedInstances) == 300
    assert int(r.NumberOfStudyRelatedSeries) == 1
    assert "CT" in list(pydicom.multival.MultiValue(str, r.ModalitiesInStudy)) \
        or r.ModalitiesInStudy == "CT"
    assert r.PatientID == s.patient_id


def test_findscu_series(server, stored, tmp_path):
    s = stored
    rs = _findscu(server, tmp_path, "SERIES", [f"StudyInstanceUID={s.study_uid}",
                                               "SeriesInstanceUID", "Modality",
                                               "NumberOfSeriesRelatedInstances"])
    assert len(rs) == 1
    assert rs[0].SeriesInstanceUID == s.series_uid
    assert rs[0].Modality == "CT"
    assert int(rs[0].NumberOfSeriesRelatedInstances) == 300


def test_findscu_image(server, stored, tmp_path):
    s = stored
    rs = _findscu(server, tmp_path, "IMAGE", [f"StudyInstanceUID={s.study_uid}",
                                              f"SeriesInstanceUID={s.series_uid}",
                                              "SOPInstanceUID", "InstanceNumber"])
    assert len(rs) == 300
    assert {str(r.SOPInstanceUID) for r in rs} == set(s.by_uid)


def _compare_dir(series, outdir: Path, log=""):
    files = [p for p in outdir.iterdir() if p.is_file()]
    assert len(files) == 300, f"received {len(files)} files\n{log[-3000:]}"
    got = {}
    for p in files:
        meta, data = dimse.file_info(p)
        got[str(meta.MediaStorageSOPInstanceUID)] = data
    assert set(got) == set(series.bytes_by_uid)
    bad = [u for u, b in got.items() if b != series.bytes_by_uid[u]]
    assert not bad, f"{len(bad)} retrieved data sets differ from the sent ones, e.g. {bad[:3]}"


def test_getscu_series(server, stored, tmp_path):
    s = stored
    outdir = tmp_path / "get"
    outdir.mkdir()
    cp = dcmtk("getscu", "-v", "-S", "+B", "-od", outdir,
               "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={s.study_uid}",
               "-k", f"SeriesInstanceUID={s.series_uid}", *conn(server))
    assert cp.returncode == 0, (cp.stdout + cp.stderr)[-3000:]
    _compare_dir(s, outdir, cp.stdout + cp.stderr)


def test_movescu_series(server, stored, tmp_path):
    s = stored
    outdir = tmp_path / "move"
    outdir.mkdir()
    cp = dcmtk("movescu", "-v", "-S", "+B", "-aem", "TESTSCU", "+P", server.move_port,
               "-od", outdir, "-k", "QueryRetrieveLevel=SERIES",
               "-k", f"StudyInstanceUID={s.study_uid}",
               "-k", f"SeriesInstanceUID={s.series_uid}", *conn(server), cwd=outdir)
    assert cp.returncode == 0, (cp.stdout + cp.stderr)[-3000:]
    _compare_dir(s, outdir, cp.stdout + cp.stderr)


def test_movescu_unknown_destination(server, stored, tmp_path):
    """C-MOVE to an AE the server does not know must end with a failure status
    (0xA801 Move Destination Unknown expected, any failure accepted); nothing is sent."""
    s = stored
    outdir = tmp_path / "move_unknown"
    outdir.mkdir()
    cp = dcmtk("movescu", "-v", "-S", "-aem", "NOSUCHAE", "+P", server.move_port,
               "-od", outdir, "-k", "QueryRetrieveLevel=STUDY",
               "-k", f"StudyInstanceUID={s.study_uid}", *conn(server), timeout=120, cwd=outdir)
    out = cp.stdout + cp.stderr
    final = [l for l in out.splitlines() if "Received Final Move Response" in l]
    assert final and ("Failed" in final[0] or "Refused" in final[0]), out[-2000:]
    assert not list(outdir.iterdir())


def test_echoscu_unknown_calling_ae_rejected(server):
    cp = dcmtk("echoscu", "-v", *conn(server, aet="NOBODY"), timeout=60)
    out = cp.stdout + cp.stderr
    assert cp.returncode != 0, out
    assert "Rejected" in out or "rejected" in out, out
    # the server keeps serving
    assert dcmtk("echoscu", *conn(server)).returncode == 0


def test_echoscu_wrong_called_ae_rejected(server):
    cp = dcmtk("echoscu", "-v", *conn(server, aec="NOTRADRIS"), timeout=60)
    out = cp.stdout + cp.stderr
    assert cp.returncode != 0, out
    assert "Rejected" in out or "rejected" in out, out
    assert dcmtk("echoscu", *conn(server)).returncode == 0


def test_open_ae_accepts_unknown_calling_ae(server_factory):
    srv = server_factory(open_ae=True)
    cp = dcmtk("echoscu", *conn(srv, aet="ANYBODY"), timeout=60)
    assert cp.returncode == 0, cp.stdout + cp.stderr
