"""C-CANCEL (PS3.7 §9.3.2.3): a C-GET cancelled by the requestor stops after the sub-operation
in progress and ends with status Cancel (0xFE00) and the counts so far."""
import dimse


def test_cget_cancel_stops_early(server, ct_series):
    for f in ct_series.files[:60]:
        status, note = dimse.store_file(server.port, f)
        assert status == 0, note
    query = dimse.make_query("SERIES", StudyInstanceUID=ct_series.study_uid,
                             SeriesInstanceUID=ct_series.series_uid)
    final, received, statuses = dimse.get(server.port, query, [(ct_series.sop_class, ct_series.ts)],
                                          cancel_after=3)
    assert final == 0xFE00, [hex(s) for s in statuses]
    assert 3 <= len(received) < 60, len(received)
    # every delivered instance is intact
    for uid, (_ts, body) in received.items():
        assert body == ct_series.bytes_by_uid[uid]
    # the association and server keep serving afterwards
    final, received, _ = dimse.get(server.port, query, [(ct_series.sop_class, ct_series.ts)])
    assert final == 0 and len(received) == 60
