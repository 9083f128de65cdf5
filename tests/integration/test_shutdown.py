"""Graceful shutdown: SIGTERM while a modality is sending lets the association in flight
finish (every instance acknowledged and stored), refuses new connections, and exits cleanly."""
import signal
import socket
import subprocess
import time

import dimse
from conftest import dcmtk_env


def test_sigterm_finishes_the_association_in_flight(server_factory, ct_series, tmp_path):
    srv = server_factory()
    log = tmp_path / "storescu.log"
    with open(log, "w") as out:
        client = subprocess.Popen(
            ["/usr/bin/storescu", "-v", "+sd", "+sp", "*.dcm", "-aet", "TESTSCU", "-aec", "RADRIS",
             "127.0.0.1", str(srv.port), str(ct_series.dir)],
            stdout=out, stderr=subprocess.STDOUT, env=dcmtk_env(), cwd=tmp_path)
    time.sleep(0.4)
    srv.proc.send_signal(signal.SIGTERM)
    assert client.wait(120) == 0, log.read_text()[-2000:]
    text = log.read_text()
    assert text.count("Received Store Response (Success)") == 300, text[-2000:]
    assert srv.proc.wait(60) == 0, "clean exit after the association ended"
    # nothing listens any more
    try:
        socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()
        listening = True
    except OSError:
        listening = False
    assert not listening
    srv.assert_verify_clean(expect_objects=300)
    srv.start()
    found = dimse.find(srv.port, dimse.make_query(
        "SERIES", SeriesInstanceUID=ct_series.series_uid, NumberOfSeriesRelatedInstances=""))
    assert [int(r.NumberOfSeriesRelatedInstances) for r in found] == [300]
