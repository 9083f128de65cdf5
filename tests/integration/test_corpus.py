"""Store every sendable file of pydicom's bundled test corpus, bit-preserving,
then C-GET every accepted instance back and compare data set bytes."""
import os
import warnings
from collections import defaultdict
from pathlib import Path

import pydicom
import pytest

import dimse

CORPUS = Path(os.path.dirname(pydicom.data.__file__)) / "test_files"
JPEGLS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81"
EXPECTED_NEAR_LOSSLESS = {"JPEGLSNearLossless_08.dcm", "JPEGLSNearLossless_16.dcm",
                          "SC_rgb_jls_lossy_line.dcm", "SC_rgb_jls_lossy_sample.dcm"}
TRUNCATED = "rtplan_truncated.dcm"
MIN_ACCEPTED = 66


class Item:
    def __init__(self, path: Path, meta, ds):
        self.path = path
        self.name = str(path.relative_to(CORPUS))
        self.sop_class = str(meta.MediaStorageSOPClassUID)
        self.sop_inst = str(meta.MediaStorageSOPInstanceUID)
        self.ts = str(meta.TransferSyntaxUID)
        self.study = str(ds.get("StudyInstanceUID", "") or "")
        self.series = str(ds.get("SeriesInstanceUID", "") or "")
        self.patient = str(ds.get("PatientID", "") or "")
        self.data = dimse.file_info(path)[1]
        self.status = None
        self.note = ""


def collect():
    items, unsendable = [], []
    for dirpath, _dirs, files in os.walk(CORPUS):
        for fn in sorted(files):
            p = Path(dirpath) / fn
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ds = pydicom.dcmread(p, stop_before_pixels=True)
            except Exception as e:
                unsendable.append((p.name, f"unreadable: {type(e).__name__}"))
                continue
            meta = ds.file_meta
            if not all(k in meta for k in ("MediaStorageSOPClassUID",
                                           "MediaStorageSOPInstanceUID", "TransferSyntaxUID")):
                unsendable.append((p.name, "no/incomplete file meta"))
                continue
            if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
                unsendable.append((p.name, "no SOP Class/Instance UID in data set"))
                continue
            items.append(Item(p, meta, ds))
    items.sort(key=lambda i: i.name)
    return items, unsendable


@pytest.fixture(scope="module")
def corpus(server):
    items, unsendable = collect()
    assert len(items) >= MIN_ACCEPTED, f"corpus too small ({len(items)})"
    names = {i.path.name for i in items}
    assert EXPECTED_NEAR_LOSSLESS <= names and TRUNCATED in names

    # the truncated RT plan goes first: it shares its SOP Instance UID with rtplan.dcm
    trunc = next(i for i in items if i.path.name == TRUNCATED)
    trunc.status, trunc.note = dimse.store_file(server.port, trunc.path)
    trunc_findable = dimse.count_instances(server.port, trunc.sop_inst)
    ds_uid = str(pydicom.dcmread(trunc.path, stop_before_pixels=True).SOPInstanceUID)
    trunc_findable += dimse.count_instances(server.port, ds_uid)

    for it in items:
        if it is trunc:
            continue
        it.status, it.note = dimse.store_file(server.port, it.path)

    accepted = [i for i in items if i.status is not None and i.status < 0xA000]
    rejected = [i for i in items if i not in accepted]
    print(f"\ncorpus: {len(items)} sendable files, {len(unsendable)} unsendable, "
          f"{len(accepted)} accepted ({len({i.sop_inst for i in accepted})} distinct "
          f"SOP instances), {len(rejected)} rejected")
    print(f"{'rejected file':50} {'TS':24} status  reason")
    for i in rejected:
        st = "none  " if i.status is None else f"0x{i.status:04X}"
        print(f"{i.name:50} {i.ts:24} {st}  {i.note}")
    for n, why in unsendable:
        print(f"unsendable: {n:40} {why}")
    return items, trunc, trunc_findable, accepted


def test_truncated_rtplan_refused(corpus):
    _items, trunc, trunc_findable, _ = corpus
    assert dimse.is_failure(trunc.status), \
        f"{TRUNCATED}: expected failure status, got {trunc.status!r} ({trunc.note})"
    assert trunc_findable == 0, "refused truncated instance is findable"


def test_jpegls_near_lossless_accepted(corpus):
    items = corpus[0]
    nl = {i.path.name: i for i in items if i.ts == JPEGLS_NEAR_LOSSLESS}
    assert set(nl) == EXPECTED_NEAR_LOSSLESS
    for name, it in nl.items():
        assert it.status == 0x0000, f"{name}: status {it.status!r} {it.note}"


def test_accept_count(corpus):
    accepted = corpus[3]
    distinct = {i.sop_inst for i in accepted}
    assert len(accepted) >= MIN_ACCEPTED, f"only {len(accepted)} files accepted"
    assert len(distinct) >= 60, f"only {len(distinct)} distinct instances"
    # well-formed files in assorted transfer syntaxes must be accepted
    must = ["CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
            "JPEG2000.dcm", "SC_rgb_rle.dcm", "waveform_ecg.dcm", "MR_small_jpeg_ls_lossless.dcm",
            "693_J2KI.dcm", "JPGExtended.dcm", "test-SR.dcm",
            "image_dfl.dcm"]  # deflated explicit VR LE
    for name in must:
        it = next(i for i in corpus[0] if i.path.name == name)
        assert it.status is not None and it.status < 0xA000, \
            f"{name} ({it.ts}) refused: {it.status!r} {it.note}"


def test_cget_roundtrip_bit_identical(server, corpus):
    """C-GET each accepted instance (IMAGE level) and compare data set bytes.

    Several corpus files share a SOP Instance UID (e.g. MR_small*.dcm in various
    transfer syntaxes); for those the returned bytes must equal one of the
    accepted variants (which one depends on the overwrite policy)."""
    accepted = corpus[3]
    by_uid = defaultdict(list)
    for it in accepted:
        by_uid[it.sop_inst].append(it)
    failures = []
    for uid, variants in sorted(by_uid.items()):
        pairs = [(v.sop_class, v.ts) for v in variants]
        # candidate hierarchy keys (variants may disagree); try each distinct one
        hier = list(dict.fromkeys((v.study, v.series) for v in reversed(variants)))
        got = None
        for study, series in hier:
            q = dimse.make_query("IMAGE", StudyInstanceUID=study, SeriesInstanceUID=series,
                                 SOPInstanceUID=uid)
            st, rec, _ = dimse.get(server.port, q, pairs)
            if uid in rec:
                got = (st, rec)
                break
        if got is None:
            failures.append(f"{uid} ({[v.name for v in variants]}): not retrieved")
            continue
        st, rec = got
        ts, data = rec[uid]
        if st != 0x0000:
            failures.append(f"{uid}: C-GET final status {st!r}")
        match = [v for v in variants if v.data == data and v.ts == ts]
        if not match:
            failures.append(f"{uid} ({[v.name for v in variants]}): retrieved bytes "
                            f"(ts {ts}, {len(data)} B) match no sent variant")
        if len(rec) != 1:
            failures.append(f"{uid}: C-GET returned {len(rec)} instances")
    assert not failures, "\n".join(failures)
