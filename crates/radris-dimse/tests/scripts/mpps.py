"""MPPS N-CREATE / N-SET against the RADRIS SCP with pynetdicom, an independent client.

usage: mpps.py HOST PORT CALLING_AE CALLED_AE
Prints one line per case: `case=<name> status=0x.... comment=<error comment>`.
"""
import sys

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep

host, port, calling, called = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


def create_dataset(accession, step_id, status="IN PROGRESS"):
    ds = Dataset()
    step = Dataset()
    step.AccessionNumber = accession
    step.ScheduledProcedureStepID = step_id
    step.RequestedProcedureID = "RP001"
    step.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.ScheduledStepAttributesSequence = [step]
    ds.PatientID = "P001"
    ds.PatientName = "Doe^John"
    ds.PerformedStationAETitle = calling
    ds.Modality = "CT"
    ds.PerformedProcedureStepID = "PPS1"
    ds.PerformedProcedureStepStartDate = "20240315"
    ds.PerformedProcedureStepStartTime = "093512"
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepDescription = "CT chest"
    ds.PerformedSeriesSequence = []
    return ds


def set_dataset(status):
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = "20240315"
    ds.PerformedProcedureStepEndTime = "094000"
    series = Dataset()
    series.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    series.Modality = "CT"
    image = Dataset()
    image.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    image.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.3"
    series.ReferencedImageSequence = [image]
    ds.PerformedSeriesSequence = [series]
    return ds


def report(case, status):
    code = getattr(status, "Status", None)
    comment = getattr(status, "ErrorComment", "")
    shown = "none" if code is None else f"0x{code:04X}"
    print(f"case={case} status={shown} comment={comment}", flush=True)


ae = AE(ae_title=calling)
ae.add_requested_context(ModalityPerformedProcedureStep)
assoc = ae.associate(host, port, ae_title=called)
if not assoc.is_established:
    print("association failed", flush=True)
    sys.exit(2)

mpps_uid = generate_uid()
status, _ = assoc.send_n_create(create_dataset("ACC001", "SPS001"), ModalityPerformedProcedureStep, mpps_uid)
report("create", status)
print(f"uid={mpps_uid}", flush=True)
status, _ = assoc.send_n_create(create_dataset("ACC001", "SPS001"), ModalityPerformedProcedureStep, mpps_uid)
report("duplicate", status)
status, _ = assoc.send_n_create(create_dataset("ACC002", "SPS002"), ModalityPerformedProcedureStep)
report("create-without-uid", status)
status, _ = assoc.send_n_create(create_dataset("NOSUCHACC", "SPS999"), ModalityPerformedProcedureStep, generate_uid())
report("unknown-step", status)
status, _ = assoc.send_n_create(create_dataset("ACC001", "SPS001", "COMPLETED"), ModalityPerformedProcedureStep, generate_uid())
report("create-completed", status)
status, _ = assoc.send_n_create(create_dataset("ACC001", "SPS001", "FINISHED"), ModalityPerformedProcedureStep, generate_uid())
report("bad-status", status)
status, _ = assoc.send_n_set(set_dataset("COMPLETED"), ModalityPerformedProcedureStep, mpps_uid)
report("set-completed", status)
status, _ = assoc.send_n_set(set_dataset("COMPLETED"), ModalityPerformedProcedureStep, mpps_uid)
report("set-after-completed", status)
status, _ = assoc.send_n_set(set_dataset("COMPLETED"), ModalityPerformedProcedureStep, generate_uid())
report("set-unknown", status)
assoc.release()
