"""Shared DICOM helpers for the RADRIS integration tests.

Everything here talks to a server on 127.0.0.1:<port>.  pynetdicom is used for
most DIMSE work; a tiny hand-written PDU layer (``raw_*``) is used where the
tests need to misbehave on the wire.
"""
from __future__ import annotations

import io
import os
import socket
import struct
import tempfile
import time
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pynetdicom import AE, _config, build_context, build_role, evt
from pynetdicom.dsutils import split_dataset

# send Part-10 files from disk as raw bytes (bit preserving, no re-encoding)
_config.STORE_SEND_CHUNKED_DATASET = True

HOST = "127.0.0.1"
SERVER_AET = "RADRIS"
TESTSCU = "TESTSCU"
OTHERSCU = "OTHERSCU"

PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"

FIND_MODELS = {"patient": PATIENT_ROOT_FIND, "study": STUDY_ROOT_FIND}
GET_MODELS = {"patient": PATIENT_ROOT_GET, "study": STUDY_ROOT_GET}
MOVE_MODELS = {"patient": PATIENT_ROOT_MOVE, "study": STUDY_ROOT_MOVE}

TIMEOUT = 60


class DimseError(AssertionError):
    pass


def is_failure(status: int | None) -> bool:
    """Failure statuses for C-STORE: 0xA7xx, 0xA9xx, 0xCxxx (and any 0xAxxx)."""
    return status is not None and (0xA000 <= status <= 0xAFFF or 0xC000 <= status <= 0xCFFF)


def _ae(aet: str) -> AE:
    ae = AE(ae_title=aet)
    ae.acse_timeout = TIMEOUT
    ae.dimse_timeout = TIMEOUT
    ae.network_timeout = TIMEOUT
    ae.maximum_pdu_size = 0
    return ae


def associate(port: int, contexts, aet: str = TESTSCU, called: str = SERVER_AET, **kw):
    ae = _ae(aet)
    ae.requested_contexts = contexts
    return ae.associate(HOST, port, ae_title=called, **kw)


def echo(port: int, aet: str = TESTSCU, called: str = SERVER_AET) -> int | None:
    assoc = associate(port, [build_context(VERIFICATION)], aet, called)
    if not assoc.is_established:
        return None
    try:
        st = assoc.send_c_echo()
        return st.Status if "Status" in st else None
    finally:
        assoc.release()


# ---------------------------------------------------------------- files / bytes
def file_info(path) -> tuple[FileMetaDataset, bytes]:
    """(file meta, raw data set bytes after the meta group) of a Part-10 file."""
    meta, offset = split_dataset(Path(path))
    with open(path, "rb") as f:
        f.seek(offset)
        return meta, f.read()


def write_part10(path, sop_class: str, sop_inst: str, ts: str, dataset_bytes: bytes) -> None:
    """Write a Part-10 file with a fresh meta header and the given raw data set bytes."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_inst
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.9.9999.1"
    buf = io.BytesIO()
    buf.write(b"\0" * 128 + b"DICM")
    # validation off: we deliberately write invalid UIDs sometimes
    write_file_meta_info(buf, meta, enforce_standard=True)
    buf.write(dataset_bytes)
    Path(path).write_bytes(buf.getvalue())


def encode_dataset(ds: Dataset, ts: str = ExplicitVRLittleEndian) -> bytes:
    """Encode ``ds`` (no meta) in the given uncompressed transfer syntax."""
    buf = io.BytesIO()
    uid = pydicom.uid.UID(ts)
    pydicom.filewriter.write_dataset(
        _DatasetWriter(buf, uid.is_implicit_VR, uid.is_little_endian), ds
    )
    return buf.getvalue()


def _DatasetWriter(buf, implicit, little):
    from pydicom.filebase import DicomFileLike

    fp = DicomFileLike(buf)
    fp.is_implicit_VR = implicit
    fp.is_little_endian = little
    return fp


# ---------------------------------------------------------------- C-STORE
def store_file(port: int, path, aet: str = TESTSCU) -> tuple[int | None, str]:
    """C-STORE one Part-10 file verbatim, proposing exactly its SOP class + TS.

    Returns (status, note). status None means no response (reject / abort).
    """
    meta, _ = split_dataset(Path(path))
    sop_class = str(meta.MediaStorageSOPClassUID)
    ts = str(meta.TransferSyntaxUID)
    assoc = associate(port, [build_context(sop_class, [ts])], aet)
    if not assoc.is_established:
        return None, "association rejected/aborted"
    try:
        ok = [c for c in assoc.accepted_contexts if c.abstract_syntax == sop_class]
        if not ok:
            return None, "presentation context rejected"
        try:
            rsp = assoc.send_c_store(str(path))
        except Exception as e:  # pragma: no cover - diagnostic
            return None, f"send error: {e!r}"
        if "Status" not in rsp:
            return None, "no response (aborted?)"
        note = str(rsp.get("ErrorComment", ""))
        return int(rsp.Status), note
    finally:
        if assoc.is_established:
            assoc.release()


def store_raw(port: int, sop_class: str, sop_inst: str, ts: str, dataset_bytes: bytes,
              aet: str = TESTSCU) -> tuple[int | None, str]:
    """C-STORE arbitrary data set bytes (possibly broken)."""
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "x.dcm")
        write_part10(p, sop_class, sop_inst, ts, dataset_bytes)
        return store_file(port, p, aet)


def store_dataset(port: int, ds: Dataset, aet: str = TESTSCU,
                  ts: str = ExplicitVRLittleEndian) -> tuple[int | None, str]:
    return store_raw(port, ds.SOPClassUID, ds.SOPInstanceUID, ts, encode_dataset(ds, ts), aet)


# ---------------------------------------------------------------- C-FIND
def make_query(level: str, **keys) -> Dataset:
    q = Dataset()
    q.QueryRetrieveLevel = level
    for k, v in keys.items():
        setattr(q, k, v)
    return q


def find(port: int, query: Dataset, model: str = "study", aet: str = TESTSCU) -> list[Dataset]:
    """C-FIND; returns all pending identifiers; raises DimseError on failure."""
    sop = FIND_MODELS[model]
    assoc = associate(port, [build_context(sop)], aet)
    if not assoc.is_established:
        raise DimseError(f"C-FIND association not established (aet={aet})")
    out = []
    final = None
    try:
        for status, ident in assoc.send_c_find(query, sop):
            if "Status" not in status:
                raise DimseError("C-FIND: no/invalid response (aborted?)")
            st = int(status.Status)
            if st in (0xFF00, 0xFF01):
                out.append(ident)
            else:
                final = st
    finally:
        if assoc.is_established:
            assoc.release()
    if final != 0x0000:
        raise DimseError(f"C-FIND final status {final!r:}")
    return out


def count_instances(port: int, sop_inst: str, study: str | None = None,
                    series: str | None = None, aet: str = TESTSCU) -> int:
    """Number of IMAGE-level matches for a SOP instance UID (study root)."""
    keys = dict(SOPInstanceUID=sop_inst)
    keys["StudyInstanceUID"] = study or ""
    keys["SeriesInstanceUID"] = series or ""
    return len(find(port, make_query("IMAGE", **keys), "study", aet))


# ---------------------------------------------------------------- C-GET / C-MOVE
def get(port: int, query: Dataset, storage_contexts, model: str = "study",
        aet: str = TESTSCU, cancel_after: int | None = None,
        ) -> tuple[int | None, dict[str, tuple[str, bytes]], list[int]]:
    """C-GET.  storage_contexts: iterable of (sop_class, transfer_syntax).

    Each (sop_class, ts) pair is proposed as its own presentation context with
    SCP role selection.  Returns (final status, {sop_instance: (ts, raw data set
    bytes)}, list of all pending/final statuses).
    """
    sop = GET_MODELS[model]
    received: dict[str, tuple[str, bytes]] = {}

    def on_store(event):
        ds_bytes = event.request.DataSet.getvalue()
        received[str(event.request.AffectedSOPInstanceUID)] = (
            str(event.context.transfer_syntax), ds_bytes)
        return 0x0000

    contexts = [build_context(sop)]
    roles = []
    seen_cls = set()
    for cls, ts in dict.fromkeys((str(c), str(t)) for c, t in storage_contexts):
        contexts.append(build_context(cls, [ts]))
        if cls not in seen_cls:
            seen_cls.add(cls)
            roles.append(build_role(cls, scp_role=True))
    if len(contexts) > 128:
        raise ValueError("too many presentation contexts")
    assoc = associate(port, contexts, aet, ext_neg=roles,
                      evt_handlers=[(evt.EVT_C_STORE, on_store)])
    if not assoc.is_established:
        raise DimseError("C-GET association not established")
    statuses = []
    final = None
    try:
        for status, _ident in assoc.send_c_get(query, sop, msg_id=1):
            if "Status" not in status:
                final = None
                break
            st = int(status.Status)
            statuses.append(st)
            if cancel_after is not None and len(statuses) == cancel_after:
                ctx = next(c for c in assoc.accepted_contexts if c.abstract_syntax == sop)
                assoc.send_c_cancel(1, ctx.context_id)
            if st != 0xFF00:
                final = st
    finally:
        if assoc.is_established:
            assoc.release()
    return final, received, statuses


class StoreSCP:
    """A pynetdicom storage SCP (C-MOVE destination) keeping raw data set bytes."""

    def __init__(self, aet: str, port: int, sop_ts_pairs=None):
        self.received: dict[str, tuple[str, bytes]] = {}
        ae = _ae(aet)
        if sop_ts_pairs:
            for cls, ts in dict.fromkeys((str(c), str(t)) for c, t in sop_ts_pairs):
                ae.add_supported_context(cls, [ts])
        else:
            from pynetdicom import StoragePresentationContexts
            from pynetdicom import ALL_TRANSFER_SYNTAXES
            for cx in StoragePresentationContexts:
                ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.require_called_aet = False

        def on_store(event):
            self.received[str(event.request.AffectedSOPInstanceUID)] = (
                str(event.context.transfer_syntax), event.request.DataSet.getvalue())
            return 0x0000

        self.server = ae.start_server((HOST, port), block=False,
                                      evt_handlers=[(evt.EVT_C_STORE, on_store)])

    def close(self):
        self.server.shutdown()


def move(port: int, query: Dataset, dest: str, model: str = "study",
         aet: str = TESTSCU) -> tuple[int | None, list[Dataset]]:
    sop = MOVE_MODELS[model]
    assoc = associate(port, [build_context(sop)], aet)
    if not assoc.is_established:
        raise DimseError("C-MOVE association not established")
    final = None
    rsps = []
    try:
        for status, _ident in assoc.send_c_move(query, dest, sop):
            if "Status" not in status:
                break
            rsps.append(status)
            if int(status.Status) != 0xFF00:
                final = int(status.Status)
    finally:
        if assoc.is_established:
            assoc.release()
    return final, rsps


# ---------------------------------------------------------------- synthetic data
def make_image(patient_name="Test^Patient", patient_id="PID1", study_uid=None,
               series_uid=None, sop_uid=None, modality="CT", study_date="20200101",
               accession="", series_number=1, instance_number=1, rows=16, cols=16,
               sop_class=None, study_description="", birth_date="19700101") -> Dataset:
    import numpy as np

    ds = Dataset()
    ds.SOPClassUID = sop_class or (CT_IMAGE_STORAGE if modality == "CT" else MR_IMAGE_STORAGE)
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.StudyDate = study_date
    ds.StudyTime = "120000"
    ds.AccessionNumber = accession
    ds.Modality = modality
    ds.StudyDescription = study_description
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = birth_date
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    arr = (np.arange(rows * cols, dtype=np.uint16) * 7 + instance_number) & 0xFFFF
    ds.PixelData = arr.astype("<u2").tobytes()
    return ds


# ---------------------------------------------------------------- raw PDU layer
def _ae16(s: str) -> bytes:
    return s.encode().ljust(16)[:16]


def _item(t: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", t, 0, len(payload)) + payload


def build_assoc_rq(calling=TESTSCU, called=SERVER_AET,
                   contexts=((1, CT_IMAGE_STORAGE, (ExplicitVRLittleEndian,)),),
                   max_pdu=16384, pdu_length: int | None = None) -> bytes:
    """Hand-built A-ASSOCIATE-RQ.  ``pdu_length`` overrides the real length (lying)."""
    body = struct.pack(">HH", 1, 0) + _ae16(called) + _ae16(calling) + b"\0" * 32
    body += _item(0x10, b"1.2.840.10008.3.1.1.1")
    for cid, abstract, tss in contexts:
        sub = _item(0x30, abstract.encode())
        for ts in tss:
            sub += _item(0x40, ts.encode())
        body += _item(0x20, struct.pack(">BBBB", cid, 0, 0, 0) + sub)
    ui = _item(0x51, struct.pack(">I", max_pdu))
    ui += _item(0x52, b"1.2.826.0.1.3680043.9.9999.2")
    body += _item(0x50, ui)
    length = len(body) if pdu_length is None else pdu_length
    return struct.pack(">BBI", 0x01, 0, length) + body


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed")
        buf += chunk
    return buf


def recv_pdu(sock: socket.socket) -> tuple[int, bytes]:
    hdr = recv_exact(sock, 6)
    ptype, _, length = struct.unpack(">BBI", hdr)
    return ptype, recv_exact(sock, length)


def read_until_closed(sock: socket.socket, timeout: float = 15.0) -> tuple[bool, bytes]:
    """Read until EOF/reset.  Returns (closed_by_peer, bytes_read)."""
    sock.settimeout(0.5)
    data = b""
    end = time.time() + timeout
    while time.time() < end:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True, data
        if not chunk:
            return True, data
        data += chunk
    return False, data


def parse_assoc_ac(body: bytes) -> tuple[dict[int, tuple[int, str]], int]:
    """Returns ({context id: (result, ts)}, peer max PDU)."""
    pos = 68
    ctxs = {}
    max_pdu = 0
    while pos + 4 <= len(body):
        t, _, ln = struct.unpack(">BBH", body[pos:pos + 4])
        val = body[pos + 4:pos + 4 + ln]
        if t == 0x21:
            cid, _, result, _ = val[:4]
            ts = ""
            if len(val) > 8:
                ts = val[8:].decode(errors="replace").rstrip("\0 ")
            ctxs[cid] = (result, ts)
        elif t == 0x50:
            p = 0
            while p + 4 <= len(val):
                st, _, sl = struct.unpack(">BBH", val[p:p + 4])
                if st == 0x51:
                    max_pdu = struct.unpack(">I", val[p + 4:p + 8])[0]
                p += 4 + sl
        pos += 4 + ln
    return ctxs, max_pdu


def _elem_ile(group: int, elem: int, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\0"
    return struct.pack("<HHI", group, elem, len(value)) + value


def c_store_rq_command(sop_class: str, sop_inst: str, msg_id: int = 1) -> bytes:
    body = _elem_ile(0, 0x0002, sop_class.encode())
    body += _elem_ile(0, 0x0100, struct.pack("<H", 0x0001))
    body += _elem_ile(0, 0x0110, struct.pack("<H", msg_id))
    body += _elem_ile(0, 0x0700, struct.pack("<H", 0))
    body += _elem_ile(0, 0x0800, struct.pack("<H", 0x0000))
    body += _elem_ile(0, 0x1000, sop_inst.encode())
    return _elem_ile(0, 0x0000, struct.pack("<I", len(body))) + body


def p_data(ctx_id: int, fragment: bytes, command: bool, last: bool) -> bytes:
    hdr = (0x01 if command else 0) | (0x02 if last else 0)
    pdv = struct.pack(">IBB", len(fragment) + 2, ctx_id, hdr) + fragment
    return struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv


def raw_associate(port: int, sop_class=CT_IMAGE_STORAGE, ts=ExplicitVRLittleEndian,
                  calling=TESTSCU) -> tuple[socket.socket, int]:
    """Open a socket and perform a valid association.  Returns (socket, peer max PDU)."""
    s = socket.create_connection((HOST, port), timeout=TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(build_assoc_rq(calling, SERVER_AET, ((1, sop_class, (ts,)),)))
    ptype, body = recv_pdu(s)
    if ptype != 0x02:
        s.close()
        raise DimseError(f"expected A-ASSOCIATE-AC, got PDU type {ptype:#x}")
    ctxs, max_pdu = parse_assoc_ac(body)
    if ctxs.get(1, (1,))[0] != 0:
        s.close()
        raise DimseError(f"presentation context not accepted: {ctxs}")
    return s, max_pdu
