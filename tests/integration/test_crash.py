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
        log_path = tmp_path / f"round{rnd}.log"
        p = start_storescu(srv, ct_series, log_path)
        time.sleep(delay)
        srv.kill9()
        try:
            p.wait(120)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        acked = parse_acked(log_path.read_text(), ct_series)
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
