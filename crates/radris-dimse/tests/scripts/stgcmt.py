"""Storage Commitment Push Model SCU with pynetdicom, an independent client.

usage: stgcmt.py same|new HOST PORT CALLING_AE CALLED_AE LISTEN_PORT REFS
  REFS: comma-separated `class:instance` pairs.
  same: the result is expected on the requesting association.
  new:  we release at once and wait for the result on a new association to LISTEN_PORT,
        where we accept the Storage Commitment context with the SCU role for ourselves
        (the caller takes the SCP role, PS3.4 J.3.3).
  missing-transaction: an N-ACTION without Transaction UID.
Prints `action=0x....`, then for the event: `event=<type> transaction=<uid>`,
`ok=<instance> ae=<retrieve AE>` per committed and `failed=<instance> reason=0x....` per failure,
and for `new` the roles the association gave the caller.
"""
import sys
import threading

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import StorageCommitmentPushModel
import os
if os.environ.get("STGCMT_DEBUG"):
    from pynetdicom import debug_logger
    debug_logger()

mode, host, port, calling, called, listen_port, refs = sys.argv[1:8]
port, listen_port = int(port), int(listen_port)

received = threading.Event()
lines = []
incoming = []


def on_event_report(event):
    ds = event.event_information
    req = event.request
    lines.append(f"event={req.EventTypeID} transaction={ds.TransactionUID}")
    same = event.assoc is assoc
    peer = event.assoc.acceptor if same else event.assoc.requestor
    lines.append(f"from={peer.ae_title} same={same}")
    incoming.append(event.assoc)
    for item in ds.get("ReferencedSOPSequence", []):
        lines.append(f"ok={item.ReferencedSOPInstanceUID} ae={item.get('RetrieveAETitle', '')}")
    for item in ds.get("FailedSOPSequence", []):
        lines.append(f"failed={item.ReferencedSOPInstanceUID} reason=0x{item.FailureReason:04X}")
    if event.assoc is not assoc:
        for cx in event.assoc.accepted_contexts:
            lines.append(f"roles as_scu={cx.as_scu} as_scp={cx.as_scp}")
    received.set()
    return 0x0000, None


handlers = [(evt.EVT_N_EVENT_REPORT, on_event_report)]
ae = AE(ae_title=calling)
ae.add_requested_context(StorageCommitmentPushModel)
server = None
if mode == "new":
    ae.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)
    server = ae.start_server(("127.0.0.1", listen_port), block=False, evt_handlers=handlers)

assoc = None
assoc = ae.associate(host, port, ae_title=called, evt_handlers=handlers)
if not assoc.is_established:
    print("association failed", flush=True)
    sys.exit(2)

ds = Dataset()
if mode != "missing-transaction":
    ds.TransactionUID = generate_uid()
    print(f"transaction={ds.TransactionUID}", flush=True)
items = []
for pair in refs.split(","):
    cls, inst = pair.split(":")
    item = Dataset()
    item.ReferencedSOPClassUID = cls
    item.ReferencedSOPInstanceUID = inst
    items.append(item)
ds.ReferencedSOPSequence = items
status, _ = assoc.send_n_action(ds, 1, StorageCommitmentPushModel, "1.2.840.10008.1.20.1.1")
print(f"action=0x{status.Status:04X} comment={status.get('ErrorComment', '')}", flush=True)

if mode == "same":
    received.wait(10)
    assoc.release()
elif mode == "new":
    assoc.release()
    received.wait(20)
    # let the sender have its N-EVENT-REPORT-RSP and release before we stop listening
    for other in incoming:
        other.join(10)
else:
    assoc.release()
if server is not None:
    server.shutdown()
for line in lines:
    print(line, flush=True)
