"""Malformed / hostile input: the server fails the one association, keeps serving
others, and leaves nothing partial in the index or on disk."""
import os
import socket
import struct
import time
import zlib

import pytest
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import dimse

PDU_NAMES = {0x02: "A-ASSOCIATE-AC", 0x03: "A-ASSOCIATE-RJ", 0x07: "A-ABORT"}


def assert_alive(server):
    assert dimse.echo(server.port) == 0x0000, "server stopped answering C-ECHO"


def assert_not_findable(server, ds):
    assert dimse.count_instances(server.port, ds.SOPInstanceUID, ds.StudyInstanceUID,
                                 ds.SeriesInstanceUID) == 0
    assert dimse.find(server.port, dimse.make_query("STUDY",
                                                    StudyInstanceUID=ds.StudyInstanceUID)) == []


@pytest.fixture(scope="module")
def bad(server):
    """Collects datasets whose store was refused/aborted, checked again at the end."""
    return []


@pytest.fixture(scope="module")
def good():
    """Datasets successfully stored in this module."""
    return []


def test_garbage_bytes(server):
    s = socket.create_connection((dimse.HOST, server.port), timeout=10)
    s.sendall(os.urandom(64) + b"\xff" * 4096)
    closed, data = dimse.read_until_closed(s, timeout=20)
    s.close()
    assert closed, "server kept a connection open after garbage bytes"
    assert not data or data[0] in (0x03, 0x07), f"unexpected reply PDU {data[:1]!r}"
    assert_alive(server)


def test_assoc_rq_length_too_long_does_not_block_others(server):
    """PDU length claims 1 GiB: the server must not wedge (others still served),
    and must not accept the association."""
    rq = dimse.build_assoc_rq(pdu_length=0x40000000)
    s = socket.create_connection((dimse.HOST, server.port), timeout=10)
    s.sendall(rq)
    try:
        assert_alive(server)  # while the liar is still connected
        s.settimeout(5)
        try:
            data = s.recv(6)
        except (socket.timeout, ConnectionResetError):
            data = b""
        assert data[:1] != b"\x02", "server accepted an association from a lying PDU"
    finally:
        s.close()
    assert_alive(server)


@pytest.mark.parametrize("contexts", [
    (),                                                           # none at all
    ((2, dimse.CT_IMAGE_STORAGE, (ExplicitVRLittleEndian,)),),   # an even ID
    ((1, dimse.CT_IMAGE_STORAGE, (ExplicitVRLittleEndian,)),
     (1, "1.2.840.10008.1.1", (ExplicitVRLittleEndian,))),        # the same ID twice
    ((1, "1." + "2" * 3000, (ExplicitVRLittleEndian,)),),         # no UID is that long
], ids=["none", "even-id", "duplicate-id", "overlong-abstract-syntax"])
def test_malformed_presentation_contexts_abort_the_association(server, contexts):
    """PS3.8 9.3.2: one or more presentation contexts, each with its own odd ID."""
    s = socket.create_connection((dimse.HOST, server.port), timeout=10)
    s.sendall(dimse.build_assoc_rq(contexts=contexts))
    closed, data = dimse.read_until_closed(s, timeout=20)
    s.close()
    assert closed, "the association went on"
    # dicom-ul answers the request; the server then aborts before any message is taken
    pdus = []
    while len(data) >= 6:
        ptype, _, length = struct.unpack(">BBI", data[:6])
        pdus.append(ptype)
        data = data[6 + length:]
    assert pdus and pdus[-1] in (0x03, 0x07), pdus
    assert_alive(server)


def _first_pdus():
    rq = dimse.build_assoc_rq()
    assert rq[74] == 0x10  # the application context item follows the 74-byte fixed part
    app_ctx_len = 4 + struct.unpack(">H", rq[76:78])[0]
    no_app_ctx = rq[6:74] + rq[74 + app_ctx_len:]
    unknown_item = rq[6:74] + struct.pack(">BBH", 0x77, 0, 3) + b"xyz" + rq[74:]
    # a role-selection sub-item whose UID length points past its end
    role = struct.pack(">BBHH", 0x54, 0, 7, 200) + b"1.2\x01\x01"
    body = rq[6:]
    ui_at = body.rindex(b"\x50\x00")
    ui_len = struct.unpack(">H", body[ui_at + 2:ui_at + 4])[0]
    lying_role = (body[:ui_at] + struct.pack(">BBH", 0x50, 0, ui_len + len(role))
                  + body[ui_at + 4:] + role)
    pdu = lambda t, b: struct.pack(">BBI", t, 0, len(b)) + b  # noqa: E731
    return {
        "no-application-context": (pdu(1, no_app_ctx), 6),
        "unknown-item": (pdu(1, unknown_item), 6),
        "role-uid-length-lies": (pdu(1, lying_role), 6),
        "too-short-for-its-fixed-part": (dimse.build_assoc_rq(pdu_length=40), 6),
        "item-length-past-the-end": (rq[:76] + struct.pack(">H", 0xFFF0) + rq[78:], 6),
        "associate-ac-from-requestor": (pdu(2, rq[6:]), 2),
        "release-rq": (pdu(5, b"\0" * 4), 2),
        "p-data": (pdu(4, struct.pack(">IBB", 2, 1, 3)), 2),
        "unknown-pdu-type": (pdu(9, b"\0" * 10), 1),
    }


@pytest.mark.parametrize("name", list(_first_pdus()))
def test_a_bad_first_pdu_gets_a_abort(server, name):
    """PS3.8 9.2, state Sta2: anything but a well-formed A-ASSOCIATE-RQ is answered with
    A-ABORT (source service-provider, with the reason) and the connection closed, not a bare
    close and not A-RELEASE-RP."""
    first, reason = _first_pdus()[name]
    s = socket.create_connection((dimse.HOST, server.port), timeout=10)
    s.sendall(first)
    closed, data = dimse.read_until_closed(s, timeout=20)
    s.close()
    assert closed, "connection left open"
    assert data == bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 2, reason]), data
    assert_alive(server)


def test_a_large_association_request_is_answered(server):
    """An A-ASSOCIATE-RQ larger than the socket's initial receive buffer (about 170 KB: 127
    contexts of 20 transfer syntaxes) is negotiated; one over 256 KiB gets A-ASSOCIATE-RJ,
    not silence."""
    def request(n_ts):
        tss = tuple(f"1.2.826.0.1.3680043.9.9999.{i}." + "7" * 30 for i in range(n_ts - 1))
        contexts = tuple((2 * i + 1, dimse.CT_IMAGE_STORAGE, tss + (ExplicitVRLittleEndian,))
                         for i in range(127))
        return dimse.build_assoc_rq(contexts=contexts)
    for rq, answer in ((request(20), 0x02), (request(40), 0x03)):
        assert (len(rq) > 160_000) if answer == 0x02 else (len(rq) > 256 << 10), len(rq)
        s = socket.create_connection((dimse.HOST, server.port), timeout=10)
        s.sendall(rq)
        s.settimeout(20)
        got = dimse.recv_exact(s, 6)
        s.close()
        assert got[0] == answer, (len(rq), got)
    assert_alive(server)


def test_a_abort_as_first_pdu_is_not_answered(server):
    s = socket.create_connection((dimse.HOST, server.port), timeout=10)
    s.sendall(bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 0, 0]))
    closed, data = dimse.read_until_closed(s, timeout=20)
    s.close()
    assert closed and data == b"", data
    assert_alive(server)


def test_truncated_dataset_refused(server, bad):
    ds = dimse.make_image("Trunc^Ated", "TRUNC1", rows=64, cols=64)
    full = dimse.encode_dataset(ds)
    cut = full[:len(full) - 1000]  # cut inside the Pixel Data value
    st, note = dimse.store_raw(server.port, ds.SOPClassUID, ds.SOPInstanceUID,
                               ExplicitVRLittleEndian, cut)
    assert dimse.is_failure(st), \
        f"truncated data set: expected failure status, got {st!r} {note}"
    bad.append(ds)
    assert_not_findable(server, ds)
    assert_alive(server)


def test_truncated_inside_header_refused(server, bad):
    ds = dimse.make_image("Trunc^Header", "TRUNC2")
    full = dimse.encode_dataset(ds)
    # cut in the middle of an element header (PatientName region)
    pos = full.index(b"Trunc^Header") - 5
    st, note = dimse.store_raw(server.port, ds.SOPClassUID, ds.SOPInstanceUID,
                               ExplicitVRLittleEndian, full[:pos])
    assert dimse.is_failure(st), (st, note)
    bad.append(ds)
    assert_not_findable(server, ds)


def test_invalid_sop_instance_uid_refused(server, bad):
    ds = dimse.make_image("Invalid^Uid", "BADUID1", sop_uid="1.2.abc")
    st, note = dimse.store_raw(server.port, ds.SOPClassUID, "1.2.abc", ExplicitVRLittleEndian,
                               dimse.encode_dataset(ds))
    assert dimse.is_failure(st), f"invalid SOP Instance UID: expected failure, got {st!r} {note}"
    bad.append(ds)
    assert dimse.find(server.port, dimse.make_query(
        "STUDY", StudyInstanceUID=ds.StudyInstanceUID)) == []
    assert_alive(server)


def test_affected_uid_mismatch_refused(server, bad):
    """Command's Affected SOP Instance UID differs from the data set's: refused."""
    ds = dimse.make_image("Mis^Match", "MISM1")
    st, note = dimse.store_raw(server.port, ds.SOPClassUID, generate_uid(),
                               ExplicitVRLittleEndian, dimse.encode_dataset(ds))
    assert dimse.is_failure(st), f"mismatching affected SOP instance: got {st!r} {note}"
    bad.append(ds)
    assert_not_findable(server, ds)


def _abandon_store(server, ds, fraction: float, linger_reset: bool):
    data = dimse.encode_dataset(ds)
    sock, max_pdu = dimse.raw_associate(server.port, ds.SOPClassUID)
    frag = min(max_pdu or 16384, 16384) - 6 - 12
    sock.sendall(dimse.p_data(1, dimse.c_store_rq_command(ds.SOPClassUID, ds.SOPInstanceUID),
                              command=True, last=True))
    limit = int(len(data) * fraction)
    off = 0
    while off < limit:
        chunk = data[off:off + frag]
        off += len(chunk)
        sock.sendall(dimse.p_data(1, chunk, command=False, last=off >= len(data)))
    assert off < len(data)
    if linger_reset:  # RST instead of FIN
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize("fraction,reset", [(0.5, False), (0.9, True), (0.01, False)])
def test_client_disconnects_mid_transfer(server, bad, fraction, reset):
    ds = dimse.make_image("Half^Sent", "HALF1", rows=1024, cols=1024)  # ~2 MiB
    _abandon_store(server, ds, fraction, reset)
    time.sleep(1.0)
    assert_alive(server)
    assert_not_findable(server, ds)
    bad.append(ds)


def test_raw_store_complete_works(server, good):
    """Sanity check of the hand-made PDU layer: a complete raw C-STORE succeeds."""
    ds = dimse.make_image("Raw^Complete", "RAW1", rows=256, cols=256)
    data = dimse.encode_dataset(ds)
    sock, max_pdu = dimse.raw_associate(server.port, ds.SOPClassUID)
    frag = min(max_pdu or 16384, 16384) - 6 - 12
    sock.sendall(dimse.p_data(1, dimse.c_store_rq_command(ds.SOPClassUID, ds.SOPInstanceUID),
                              command=True, last=True))
    for off in range(0, len(data), frag):
        chunk = data[off:off + frag]
        sock.sendall(dimse.p_data(1, chunk, command=False, last=off + len(chunk) >= len(data)))
    ptype, body = dimse.recv_pdu(sock)
    assert ptype == 0x04, f"expected P-DATA-TF, got {PDU_NAMES.get(ptype, ptype)}"
    # status (0000,0900) in the implicit-LE command set
    idx = body.find(b"\x00\x00\x00\x09\x02\x00\x00\x00")
    assert idx >= 0, body
    status = struct.unpack("<H", body[idx + 8:idx + 10])[0]
    assert status == 0x0000
    sock.sendall(struct.pack(">BBI", 0x05, 0, 4) + b"\0\0\0\0")  # A-RELEASE-RQ
    ptype, _ = dimse.recv_pdu(sock)
    assert ptype == 0x06
    sock.close()
    assert dimse.count_instances(server.port, ds.SOPInstanceUID, ds.StudyInstanceUID,
                                 ds.SeriesInstanceUID) == 1
    good.append(ds)


DEFLATED = "1.2.840.10008.1.2.1.99"


def _deflate(*parts: bytes) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw DEFLATE (PS3.5 A.5)
    return b"".join(z.compress(p) for p in parts) + z.flush()


def _store_status(server, ds, body: bytes, ts: str) -> int | None:
    st, _note = dimse.store_raw(server.port, ds.SOPClassUID, ds.SOPInstanceUID, ts, body)
    return st


def test_deflated_data_sets_are_checked_like_any_other(server, bad, good):
    """A deflated data set is inflated (bounded) and walked before it is accepted: a few KiB
    that inflate to 100 MiB, a cut stream and bytes after its end are refused; a whole one,
    with or without its even-length pad byte, is stored."""
    def image(name):
        return dimse.make_image(name, "DFL1", rows=64, cols=64)

    bomb = image("Deflate^Bomb")
    huge = struct.pack("<HH2sHI", 0x7FE1, 0x0010, b"OB", 0, 100 << 20)
    zeros = bytes(1 << 20)
    body = _deflate(dimse.encode_dataset(bomb), huge, *([zeros] * 100))
    assert len(body) < 200_000
    t0 = time.time()
    assert _store_status(server, bomb, body, DEFLATED) == 0xC000
    assert time.time() - t0 < 30
    bad.append(bomb)

    for name, mangle in [("Deflate^Cut", lambda b: b[: len(b) // 2]),
                         ("Deflate^Trailing", lambda b: b + os.urandom(1000) + b"\1")]:
        ds = image(name)
        st = _store_status(server, ds, mangle(_deflate(dimse.encode_dataset(ds))), DEFLATED)
        assert st is not None and dimse.is_failure(st), (name, st)
        bad.append(ds)

    for name, pad in [("Deflate^Whole", False), ("Deflate^Padded", True)]:
        ds = image(name)
        body = _deflate(dimse.encode_dataset(ds))
        if pad and len(body) % 2 == 1:
            body += b"\0"
        assert _store_status(server, ds, body, DEFLATED) == 0x0000, name
        assert dimse.count_instances(server.port, ds.SOPInstanceUID) == 1
        good.append(ds)
    assert_alive(server)


def _raw_store(server, context_class: str, ds, data: bytes) -> int:
    """C-STORE `data` for `ds` over hand-made PDUs on a context for `context_class`."""
    sock, _max_pdu = dimse.raw_associate(server.port, context_class)
    try:
        sock.sendall(dimse.p_data(1, dimse.c_store_rq_command(ds.SOPClassUID, ds.SOPInstanceUID),
                                  command=True, last=True))
        sock.sendall(dimse.p_data(1, data, command=False, last=True))
        ptype, body = dimse.recv_pdu(sock)
        assert ptype == 0x04, PDU_NAMES.get(ptype, ptype)
        # status (0000,0900) in the implicit-LE command set
        idx = body.find(b"\x00\x00\x00\x09\x02\x00\x00\x00")
        assert idx >= 0, body
        return struct.unpack("<H", body[idx + 8:idx + 10])[0]
    finally:
        sock.close()


def test_file_meta_inside_a_data_set_is_refused(server, bad):
    """Group 0002 belongs to the Part-10 header only: inside a data set it would make the
    stored file declare another transfer syntax."""
    ds = dimse.make_image("Meta^Smuggled", "MET1")
    ts = b"1.2.840.10008.1.2.2\0"
    smuggled = struct.pack("<HH2sH", 0x0002, 0x0010, b"UI", len(ts)) + ts
    assert _raw_store(server, ds.SOPClassUID, ds, smuggled + dimse.encode_dataset(ds)) == 0xC000
    bad.append(ds)
    assert_alive(server)


def test_store_on_another_sop_class_context_is_refused(server, bad):
    """A C-STORE travels on the presentation context of its SOP class (PS3.7 9.1.1.1)."""
    ds = dimse.make_image("Wrong^Context", "CTX1")
    mr = "1.2.840.10008.5.1.4.1.1.4"
    assert _raw_store(server, mr, ds, dimse.encode_dataset(ds)) == 0x0122
    bad.append(ds)
    assert_alive(server)


def test_nothing_partial_after_restart(server, bad, good):
    """After a clean restart nothing refused/abandoned is findable; verify is clean."""
    assert len(bad) >= 5
    server.stop()
    # exactly the successfully stored instances, nothing partial
    server.assert_verify_clean(expect_objects=len(good))
    server.start()
    for ds in bad:
        assert dimse.find(server.port, dimse.make_query(
            "STUDY", StudyInstanceUID=ds.StudyInstanceUID)) == [], ds.PatientName
    assert_alive(server)
