"""The rest of the CLI contract: `radris import` (recursive, resumable, rejected-file summary),
`radris demo` (the synthetic demo set, queried back over DIMSE), the admin SCU, and many
associations at once."""
import os
import re
import subprocess
import threading

from pydicom.uid import generate_uid

import dimse
from conftest import RADRIS_BIN, run_radris


def test_import_is_recursive_resumable_and_reports_rejects(server_factory, ct_series, tmp_path):
    src = tmp_path / "in"
    (src / "nested").mkdir(parents=True)
    for f in ct_series.files[:20]:
        (src / "nested" / f.name).write_bytes(f.read_bytes())
    (src / "notes.txt").write_text("not DICOM")
    srv = server_factory(start=False)
    first = run_radris("import", "--data-dir", srv.data_dir, src)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "import: 20 stored, 0 already present, 1 rejected" in first.stdout, first.stdout
    assert re.search(r"rejected .*notes\.txt: .*not a DICOM Part-10 file", first.stdout), first.stdout
    again = run_radris("import", "--data-dir", srv.data_dir, src / "nested")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "import: 0 stored, 20 already present, 0 rejected" in again.stdout, again.stdout
    srv.assert_verify_clean(expect_objects=20)
    # odd entries in the tree are listed as rejected; the rest is imported
    odd = tmp_path / "odd"
    (odd / "a").mkdir(parents=True)
    for f in ct_series.files[20:23]:
        (odd / "a" / f.name).write_bytes(f.read_bytes())
    (odd / "a" / "broken").symlink_to(odd / "nowhere")
    os.mkfifo(odd / "a" / "fifo")
    (odd / "a" / "loop").symlink_to(odd)
    third = run_radris("import", "--data-dir", srv.data_dir, odd, timeout=120)
    assert third.returncode == 1, third.stdout + third.stderr
    assert "import: 3 stored, 0 already present, 2 rejected" in third.stdout, third.stdout
    assert re.search(r"rejected .*broken: cannot read it", third.stdout), third.stdout
    assert re.search(r"rejected .*fifo: not a regular file", third.stdout), third.stdout
    # resumable under the `reject` policy too: a file stored byte for byte already is no conflict
    reject = tmp_path / "reject.toml"
    reject.write_text('duplicate_policy = "reject"\n')
    fourth = run_radris("import", "--config", reject, "--data-dir", srv.data_dir, src / "nested")
    assert fourth.returncode == 0, fourth.stdout + fourth.stderr
    assert "import: 0 stored, 20 already present, 0 rejected" in fourth.stdout, fourth.stdout
    # a reader that went away (`radris import … | head`) ends the listing, not the process
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        gone = subprocess.run([RADRIS_BIN, "import", "--data-dir", str(srv.data_dir), str(src)],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert gone.returncode == 1 and "panicked" not in gone.stderr, gone.stderr
    srv.start()
    got = dimse.find(srv.port, dimse.make_query("SERIES", StudyInstanceUID=ct_series.study_uid,
                                                NumberOfSeriesRelatedInstances=""))
    assert [int(r.NumberOfSeriesRelatedInstances) for r in got] == [23]


def values(v) -> set[str]:
    """A DICOM value as a set of strings (pydicom gives a str for a single value)."""
    return {str(v)} if isinstance(v, str) else {str(x) for x in v}


def test_demo_data_set_is_queryable(server_factory, tmp_path):
    srv = server_factory(start=False)
    # an archive that already holds more instances than the demo set: the demo is still
    # written (it is looked for by its own studies, not by a count)
    run_radris("generate", "ct", "--out", tmp_path / "other", "--slices", 700, "--rows", 8,
               "--cols", 8, "--seed", 7, check=True)
    run_radris("import", "--data-dir", srv.data_dir, tmp_path / "other", check=True)
    run_radris("demo", "--data-dir", srv.data_dir, check=True, timeout=900)
    srv.start()
    studies = dimse.find(srv.port, dimse.make_query(
        "STUDY", StudyInstanceUID="", PatientName="", ModalitiesInStudy="",
        NumberOfStudyRelatedInstances="", StudyDescription=""))
    studies = [s for s in studies if int(s.NumberOfStudyRelatedInstances) != 700]
    by_desc = {str(s.StudyDescription): s for s in studies}
    assert len(studies) == 6, [str(s.StudyDescription) for s in studies]
    chest = by_desc["CT CHEST LUNG NODULE FOLLOW-UP"]
    assert int(chest.NumberOfStudyRelatedInstances) == 300
    # and its prior a year earlier, for comparison in the viewer, with its signed report
    # stored as DICOM SR (so are the head CT's and the MR brain's)
    baseline = by_desc["CT CHEST LUNG NODULE BASELINE"]
    assert int(baseline.NumberOfStudyRelatedInstances) == 100 + 1
    assert values(baseline.ModalitiesInStudy) == {"CT", "SR"}
    assert values(by_desc["CT HEAD WITHOUT CONTRAST"].ModalitiesInStudy) == {"CT", "SR"}
    pet = by_desc["PET-CT WHOLE BODY FDG"]
    assert values(pet.ModalitiesInStudy) == {"CT", "PT"}
    assert values(by_desc["XR CHEST PA"].ModalitiesInStudy) == {"CR"}
    assert values(by_desc["MR BRAIN"].ModalitiesInStudy) == {"MR", "SR"}
    # the same patient has a head CT and an MR brain; the chest CT patient two chest CTs
    for pid in ("DEMO0001", "DEMO0002"):
        pats = dimse.find(srv.port, dimse.make_query("PATIENT", PatientID=pid,
                                                     NumberOfPatientRelatedStudies=""), model="patient")
        assert [int(p.NumberOfPatientRelatedStudies) for p in pats] == [2]
    # running demo again changes nothing
    srv.stop()
    run_radris("demo", "--data-dir", srv.data_dir, check=True, timeout=900)
    srv.assert_verify_clean(expect_objects=700 + 300 + 100 + 40 + 24 + 1 + 160 + 3)


def test_admin_scu_find_get_move(server, ct_series, tmp_path):
    peer = ["--aet", "TESTSCU", "--aec", "RADRIS", "127.0.0.1", str(server.port)]
    run_radris("dicom", "store", *peer, *ct_series.files[:5], check=True)
    found = run_radris("dicom", "find", *peer, "--level", "IMAGE", "-k",
                       f"SeriesInstanceUID={ct_series.series_uid}", "-k", "SOPInstanceUID", check=True)
    assert found.stdout.count('"00080018"') == 5, found.stdout
    out = tmp_path / "got"
    got = run_radris("dicom", "get", *peer, "--level", "SERIES", "-k",
                     f"StudyInstanceUID={ct_series.study_uid}", "-k",
                     f"SeriesInstanceUID={ct_series.series_uid}", "--out", out, check=True)
    assert "5 completed, 0 failed" in got.stdout, got.stdout
    for f in out.iterdir():
        uid = f.stem
        assert dimse.file_info(f)[1] == ct_series.bytes_by_uid[uid]
    unknown = run_radris("dicom", "move", *peer, "--level", "STUDY", "-k",
                         f"StudyInstanceUID={ct_series.study_uid}", "--dest", "NOWHERE")
    assert unknown.returncode != 0 and "0xA801" in unknown.stderr, unknown.stderr


def test_many_concurrent_associations(server):
    errors = []
    uids = []

    def worker(k):
        try:
            study = generate_uid()
            for i in range(5):
                ds = dimse.make_image(f"Conc^{k}", f"CONC{k}", study, instance_number=i + 1)
                status, note = dimse.store_dataset(server.port, ds)
                if status != 0:
                    errors.append((k, status, note))
                uids.append(str(ds.SOPInstanceUID))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append((k, repr(e), ""))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    assert dimse.echo(server.port) == 0, "echo must be answered while others store"
    for t in threads:
        t.join(300)
    assert not errors, errors
    got = dimse.find(server.port, dimse.make_query("PATIENT", PatientID="CONC*",
                                                   NumberOfPatientRelatedInstances=""), model="patient")
    assert sorted(int(p.NumberOfPatientRelatedInstances) for p in got) == [5] * 12
    assert len(set(uids)) == 60


def test_admin_verify_beside_a_busy_server(server_factory, ct_series):
    """`radris admin verify` while the server stores: blobs still in staging or just published
    are neither orphans nor missing; every run is clean."""
    import subprocess as sp
    from conftest import dcmtk_env
    srv = server_factory()
    p = sp.Popen(["/usr/bin/storescu", "+sd", "+sp", "*.dcm", "-aet", "TESTSCU", "-aec", "RADRIS",
                  "127.0.0.1", str(srv.port), str(ct_series.dir)],
                 stdout=sp.DEVNULL, stderr=sp.PIPE, env=dcmtk_env())
    runs = []
    while p.poll() is None or not runs:
        rc, out = srv.verify()
        m = re.search(r"verify: (\d+) objects ok, (\d+) mismatches, (\d+) missing, (\d+) orphans",
                      out)
        assert rc == 0 and m, out
        runs.append(tuple(map(int, m.groups())))
        assert runs[-1][1:] == (0, 0, 0), out
    assert p.wait(600) == 0, p.stderr.read()
    print(f"{len(runs)} verify runs during the store: {runs}")
    srv.assert_verify_clean(expect_objects=300)


def test_one_server_per_data_directory(server):
    """A second `radris serve` on a served data directory is refused at once (its crash
    recovery would take the first one's stores in flight for a crash's leftovers)."""
    from conftest import free_port
    second = run_radris("serve", "--data-dir", server.data_dir, "--dicom-listen",
                        f"127.0.0.1:{free_port()}", "--http-listen", f"127.0.0.1:{free_port()}",
                        timeout=60)
    assert second.returncode != 0, second.stdout + second.stderr
    assert "already served by another radris process" in second.stderr, second.stderr
    assert dimse.echo(server.port) == 0x0000


def test_admin_commands_refuse_a_directory_without_an_archive(tmp_path):
    typo = tmp_path / "radirs"
    for cmd in (["admin", "verify"], ["audit", "verify"], ["admin", "keys", "list"]):
        cp = run_radris(*cmd, "--data-dir", typo)
        assert cp.returncode == 2, cp.stdout + cp.stderr
        assert "no archive in" in cp.stderr, cp.stderr
    assert not typo.exists(), "a read-only check made an archive"


def test_environment_switches_override_the_file(server_factory):
    """`RADRIS_OPEN_AE=false` turns off `open_ae = true` in the file; switches take 1/0 too."""
    srv = server_factory(start=False)
    srv.config_path.write_text("open_ae = true\n" + srv.config_path.read_text())
    srv.env["RADRIS_OPEN_AE"] = "false"
    srv.env["RADRIS_LOG_JSON"] = "0"
    srv.start()
    assert dimse.echo(srv.port, aet="STRANGER") is None, "an unknown AE got in"
    assert dimse.echo(srv.port) == 0x0000
    srv.stop()
    srv.env["RADRIS_OPEN_AE"] = "1"
    srv.start()
    assert dimse.echo(srv.port, aet="STRANGER") == 0x0000


def silent_listener():
    """A TCP port that accepts connections and never says a word (a hung peer)."""
    import socket
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(8)
    held = []
    stop = threading.Event()

    def accept():
        lst.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(lst.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()

    def close():
        stop.set()
        for c in held:
            c.close()
        lst.close()

    return lst.getsockname()[1], close


def test_a_silent_peer_times_out_with_a_clear_message(tmp_path):
    port, close = silent_listener()
    try:
        env = dict(os.environ, RADRIS_LOG_JSON="1")
        cp = run_radris("dicom", "echo", "--timeout", 2, "127.0.0.1", port, env=env, timeout=60)
        assert cp.returncode == 2, cp.stdout + cp.stderr
        assert "no answer from RADRIS@127.0.0.1" in cp.stderr and "within 2 s" in cp.stderr, \
            cp.stderr
        assert "TLS" not in cp.stderr, cp.stderr
    finally:
        close()
    afile = tmp_path / "afile"
    afile.write_text("")
    cp = run_radris("dicom", "get", "127.0.0.1", port, "-k", "StudyInstanceUID=1.2.3",
                    "--out", afile)
    assert cp.returncode == 2 and f"--out {afile}: exists and is not a folder" in cp.stderr, \
        cp.stderr


def test_c_move_to_a_hung_destination_fails_within_artim(server_factory, ct_series):
    """A destination that accepts the connection and never answers: the C-MOVE fails once
    ARTIM expires, with a status, before a requestor's own timeout."""
    import time
    port, close = silent_listener()
    try:
        srv = server_factory(extra_config=(
            "\n[[remote_aes]]\nae_title = \"HUNGDEST\"\ntenant = \"default\"\n"
            f"host = \"127.0.0.1\"\nport = {port}\n\n[dimse]\nartim_timeout_s = 3\n"))
        stored = run_radris("dicom", "store", "--aet", "TESTSCU", "127.0.0.1", srv.port,
                            *ct_series.files[:2])
        assert stored.returncode == 0, stored.stdout + stored.stderr
        t0 = time.time()
        st, _ = dimse.move(srv.port, dimse.make_query("STUDY",
                                                      StudyInstanceUID=ct_series.study_uid),
                           "HUNGDEST")
        took = time.time() - t0
        assert st is not None and st & 0xF000 in (0xA000, 0xC000), hex(st or 0)
        assert took < 20, took
        assert "no answer from HUNGDEST" in srv.log_tail(200)
    finally:
        close()
