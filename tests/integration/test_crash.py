"""Crash consistency: kill -9 the server at a random moment while storescu sends the
300-slice series; every instance the client got a Success response for must be
retrievable bit-identical after restart, and `radris admin verify` must be clean."""
import os
import random
import re
import subprocess
import time

import pytest

import dimse
from conftest import dcmtk_env

ROUNDS = 3
SEED = int(os.environ.get("RADRIS_CRASH_SEED", str(int(time.time()))))


def start_storescu(server, series, log_path):
    log = open(log_path, "w")
    p = subprocess.Popen(["/usr/bin/storescu", "-v", "+sd", "+sp", "*.dcm",
                          "-aet", "TESTSCU", "-aec", "RADRIS", "127.0.0.1", str(server.port),
                          str(series.dir)],
                         stdout=log, stderr=subprocess.STDOUT, env=dcmtk_env(),
                         cwd=str(log_path.parent))
    log.close()
    return p


def parse_acked(text: str, series) -> list[str]:
    """SOP instance UIDs for which storescu logged a Success store response."""
    acked = []
    current = None
    for line in text.splitlines():
        m = re.search(r"Sending file: (.+?)\s*$", line)
        if m:
            current = m.group(1)
            continue
        if "Received Store Response" in line:
            if "(Success)" in line and current is not None:
                acked.append(series.uid_by_file.get(current)
                             or series.uid_by_file[os.path.basename(current)])
            current = None
    return acked


def store_and_kill(server, series, log_path, delay: float) -> list[str]:
    """storescu of `series`, the server killed -9 after `delay` seconds; the instances the
    client got Success for."""
    p = start_storescu(server, series, log_path)
    time.sleep(delay)
    server.kill9()
    try:
        p.wait(120)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    return parse_acked(log_path.read_text(), series)


def check_retrievable(server, series, must_have: set[str]) -> int:
    st, rec, _ = dimse.get(server.port, dimse.make_query(
        "SERIES", StudyInstanceUID=series.study_uid, SeriesInstanceUID=series.series_uid),
        [(series.sop_class, series.ts)])
    missing = must_have - set(rec)
    assert not missing, f"{len(missing)} acknowledged instances lost, e.g. {sorted(missing)[:3]}"
    corrupt = [u for u, (_ts, b) in rec.items() if b != series.bytes_by_uid.get(u)]
    assert not corrupt, f"{len(corrupt)} retrieved instances differ from the sent bytes"
    assert set(rec) <= set(series.by_uid)
    # index and C-FIND agree with what C-GET delivered
    rs = dimse.find(server.port, dimse.make_query(
        "IMAGE", StudyInstanceUID=series.study_uid, SeriesInstanceUID=series.series_uid,
        SOPInstanceUID=""))
    assert {str(r.SOPInstanceUID) for r in rs} == set(rec)
    if rec:
        assert st == 0x0000, f"C-GET final status {st!r}"
    return len(rec)


@pytest.mark.slow
def test_kill9_during_store(server_factory, ct_series, tmp_path):
    rng = random.Random(SEED)
    print(f"\ncrash test seed {SEED} (set RADRIS_CRASH_SEED to reproduce)")

    # calibrate: how long does one full storescu run take on a fresh server?
    cal = server_factory()
    t0 = time.time()
    p = start_storescu(cal, ct_series, tmp_path / "calibrate.log")
    assert p.wait(600) == 0, (tmp_path / "calibrate.log").read_text()[-2000:]
    duration = time.time() - t0
    cal.stop()
    assert len(parse_acked((tmp_path / "calibrate.log").read_text(), ct_series)) == 300
    print(f"full store of 300 slices took {duration:.1f}s")

    srv = server_factory()
    acked_total: set[str] = set()
    for rnd in range(ROUNDS):
        delay = rng.uniform(0.03 * duration, 0.97 * duration)
        acked = store_and_kill(srv, ct_series, tmp_path / f"round{rnd}.log", delay)
        acked_total |= set(acked)
        print(f"round {rnd}: killed after {delay:.2f}s, {len(acked)} acked this round, "
              f"{len(acked_total)} acked in total")

        srv.start()  # same data dir
        n = check_retrievable(srv, ct_series, acked_total)
        srv.stop()
        srv.assert_verify_clean(expect_objects=n)
        srv.start()
        assert check_retrievable(srv, ct_series, acked_total) == n
    srv.stop()


def changed_copy(series, files, out, note: str):
    """The same instances (same UIDs), one attribute changed: a second version to overwrite
    the first with."""
    import pydicom
    from conftest import Series
    out.mkdir()
    for f in files:
        ds = pydicom.dcmread(f)
        ds.ImageComments = note
        ds.save_as(out / f.name, enforce_file_format=True)
    return Series(out)


@pytest.mark.slow
def test_kill9_during_overwrites(server_factory, ct_series, tmp_path):
    """Under the overwrite policy a store of a stored instance replaces it: the new row and the
    old blob's queued removal commit together, the old file goes after. kill -9 at random
    moments while changed copies of a stored series arrive: after each restart every instance
    is there, byte-identical to one of the versions sent, and `admin verify` finds no orphan,
    missing or damaged file."""
    rng = random.Random(SEED + 1)
    print(f"\ncrash test seed {SEED} (set RADRIS_CRASH_SEED to reproduce)")
    files = ct_series.files[:150]
    versions = [changed_copy(ct_series, files, tmp_path / f"v{v}", f"version {v}")
                for v in range(2)]
    srv = server_factory(start=False)
    srv.config_path.write_text('duplicate_policy = "overwrite"\n' + srv.config_path.read_text())
    srv.start()
    t0 = time.time()
    p = start_storescu(srv, versions[0], tmp_path / "first.log")
    assert p.wait(600) == 0, (tmp_path / "first.log").read_text()[-2000:]
    duration = time.time() - t0
    assert len(parse_acked((tmp_path / "first.log").read_text(), versions[0])) == len(files)
    uids = set(versions[0].by_uid)
    for rnd in range(2 * ROUNDS):
        sent = versions[(rnd + 1) % 2]
        delay = rng.uniform(0.15 * duration, 0.85 * duration)
        acked = set(store_and_kill(srv, sent, tmp_path / f"overwrite{rnd}.log", delay))
        print(f"round {rnd}: killed after {delay:.2f}s, {len(acked)} overwrites acked")
        srv.start()
        st, rec, _ = dimse.get(srv.port, dimse.make_query(
            "SERIES", StudyInstanceUID=sent.study_uid, SeriesInstanceUID=sent.series_uid),
            [(sent.sop_class, sent.ts)])
        assert st == 0x0000 and set(rec) == uids, f"{len(uids - set(rec))} instances lost"
        for uid, (_ts, data) in rec.items():
            assert data in (versions[0].bytes_by_uid[uid], versions[1].bytes_by_uid[uid]), uid
            if uid in acked:
                assert data == sent.bytes_by_uid[uid], f"{uid}: acknowledged overwrite lost"
        srv.stop()
        srv.assert_verify_clean(expect_objects=len(files))
        srv.start()
    srv.stop()
