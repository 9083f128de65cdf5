"""Encryption at rest: every stored blob is AES-256-GCM under a tenant data key wrapped by the
master key. On disk a blob is not DICOM and carries no patient name in clear; one flipped byte
makes retrieval fail (never silently different data) and `admin verify` report it; rotating
the tenant's data key, with re-encryption, keeps every instance byte-identical."""
import io
import subprocess
from pathlib import Path

import pydicom
import pytest
import requests

import dimse
from conftest import Server, dcmtk_env, run_radris
from dicomweb_util import split_multipart


@pytest.fixture(scope="module")
def enc(tmp_path_factory):
    out = tmp_path_factory.mktemp("encct")
    run_radris("generate", "ct", "--out", out, "--slices", 4, "--rows", 64, "--cols", 64,
               "--seed", 11, check=True)
    files = sorted(out.glob("*.dcm"))
    srv = Server(tmp_path_factory.mktemp("enc"))
    srv.start()
    cp = subprocess.run(["/usr/bin/storescu", "-aet", dimse.TESTSCU, "-aec", dimse.SERVER_AET,
                         "127.0.0.1", str(srv.port), *map(str, files)],
                        capture_output=True, text=True, env=dcmtk_env(), timeout=60)
    assert cp.returncode == 0, cp.stderr
    yield srv, files
    srv.stop()


def blobs(srv) -> list[Path]:
    return sorted(p for p in (srv.data_dir / "blobs").rglob("*.dcm"))


def retrieve_all(srv, study: str) -> dict[str, bytes]:
    s = srv.session()
    r = s.get(f"{srv.dicomweb}/studies/{study}", timeout=30,
              headers={"Accept": 'multipart/related; type="application/dicom"'})
    assert r.status_code == 200, r.text
    out = {}
    for _, body in split_multipart(r.content, r.headers["Content-Type"]):
        ds = pydicom.dcmread(io.BytesIO(body))
        out[str(ds.SOPInstanceUID)] = body
    return out


def test_blobs_on_disk_are_not_dicom_and_hide_the_patient(enc):
    srv, files = enc
    stored = blobs(srv)
    assert len(stored) == len(files)
    name = str(pydicom.dcmread(files[0], stop_before_pixels=True).PatientName).encode()
    for p in stored:
        raw = p.read_bytes()
        assert raw[:8] == b"RDXBLOB1"
        assert b"DICM" not in raw and name not in raw
        with pytest.raises(Exception):
            pydicom.dcmread(p)
    # the staging area holds nothing in clear either (nothing in flight now): only the empty
    # spare files made ahead for the next instances
    assert all(p.stat().st_size == 0 for p in (srv.data_dir / "staging").iterdir())


def test_retrieval_decrypts_byte_identical(enc, tmp_path):
    srv, files = enc
    study = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    got = retrieve_all(srv, study)
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        sent = dimse.file_info(f)[1]
        out = tmp_path / "back.dcm"
        out.write_bytes(got[str(ds.SOPInstanceUID)])
        back = dimse.file_info(out)[1]
        assert back == sent


def test_key_rotation_with_reencryption_keeps_data(enc):
    srv, files = enc
    study = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    before = retrieve_all(srv, study)
    headers_before = {p: p.read_bytes()[8:24] for p in blobs(srv)}
    keys = run_radris("admin", "keys", "list", "--data-dir", srv.data_dir, "--config",
                      srv.config_path, check=True, env=srv.env).stdout.split("\n")
    assert sum("active" in k for k in keys) == 1
    cp = run_radris("admin", "keys", "rotate", "--tenant", "default", "--reencrypt",
                    "--data-dir", srv.data_dir, "--config", srv.config_path, check=True,
                    env=srv.env)
    assert f"{len(files)} blobs re-encrypted" in cp.stdout
    for p in blobs(srv):
        assert p.read_bytes()[8:24] != headers_before[p], "blob still under the old key"
    # the running server reads the rotated blobs (it learns the new key on first sight)
    assert retrieve_all(srv, study) == before
    # and stores new ones under the new key after a restart, everything still verifies
    srv.restart()
    assert retrieve_all(srv, study) == before
    srv.assert_verify_clean(expect_objects=len(files))
    after = run_radris("admin", "keys", "list", "--data-dir", srv.data_dir, "--config",
                       srv.config_path, check=True, env=srv.env).stdout
    assert after.count("retired") == 1 and after.count("active") == 1


def test_master_key_rotation_keeps_everything_readable(enc):
    srv, files = enc
    study = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    before = retrieve_all(srv, study)
    old_key = (srv.data_dir / "keys" / "master.key").read_text()
    cp = run_radris("admin", "keys", "rotate-master", "--data-dir", srv.data_dir, "--config",
                    srv.config_path, check=True, env=srv.env)
    assert "data keys re-wrapped" in cp.stdout
    assert (srv.data_dir / "keys" / "master.key").read_text() != old_key
    keys = run_radris("admin", "keys", "list", "--data-dir", srv.data_dir, "--config",
                      srv.config_path, check=True, env=srv.env).stdout
    kek_ids = {line.split("\t")[1] for line in keys.strip().splitlines()}
    assert len(kek_ids) == 1, "every data key is wrapped by the new master key"
    srv.restart()
    assert retrieve_all(srv, study) == before
    # the admin commands audited beside the running server; the chain stays intact
    ok = run_radris("audit", "verify", "--data-dir", srv.data_dir, "--config", srv.config_path,
                    env=srv.env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # the old master key is no longer needed for the data keys: without it they still open
    prev = srv.data_dir / "keys" / "previous"
    moved = sorted(prev.glob("*.key"))
    for p in moved:
        p.rename(p.with_suffix(".bak"))
    try:
        srv.restart()
        assert retrieve_all(srv, study) == before
    finally:
        for p in moved:
            p.with_suffix(".bak").rename(p)


def test_a_flipped_byte_fails_retrieval_and_verify(enc):
    srv, files = enc
    target = blobs(srv)[0]
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    target.write_bytes(bytes(raw))
    study = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    s = srv.session()
    r = None
    try:
        r = s.get(f"{srv.dicomweb}/studies/{study}", timeout=30,
                  headers={"Accept": 'multipart/related; type="application/dicom"'})
        # the stream is cut: the multipart body is incomplete, never silently altered
        parts = split_multipart(r.content, r.headers["Content-Type"])
        assert len(parts) < len(files)
    except requests.exceptions.RequestException:
        pass
    rc, out = srv.verify()
    assert rc != 0 and "mismatch" in out.lower(), out
    assert srv.is_running()
