"""Write a small synthetic CT series for the browser tests' robustness cases.

    python3 make_series.py OUT --patient NAME --slices N [--rows R] [--damaged K ...]

Slice K of `--damaged` is stored with JPEG Baseline transfer syntax and pixel data that is
not a JPEG stream, so the browser's decoder fails on it while the other slices are fine.
"""

import argparse
import pathlib

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--patient", required=True)
    ap.add_argument("--slices", type=int, required=True)
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--damaged", type=int, nargs="*", default=[])
    a = ap.parse_args()
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    n = a.rows
    yy, xx = np.mgrid[0:n, 0:n]
    for k in range(a.slices):
        ds = Dataset()
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientName, ds.PatientID = a.patient, a.patient.replace("^", "")[:16]
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20261101", "120000", ""
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, k + 1
        ds.StudyDescription, ds.SeriesDescription = "ROBUSTNESS", f"{a.slices} slices"
        ds.ImagePositionPatient = [-n / 2, -n / 2, -float(k)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [1, 1], 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows = ds.Columns = n
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.WindowCenter, ds.WindowWidth = 40, 400
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
        if k in a.damaged:
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
            ds.PixelData = encapsulate([b"\xff\xd8this is not a JPEG stream\xff\xd9"])
            meta.TransferSyntaxUID = JPEGBaseline8Bit
        else:
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            r = np.hypot(xx - n / 2, yy - n / 2)
            img = np.where(r < n * 0.4, 40 + (k % 50) * 10, -1000).astype(np.int16)
            img[(xx // 8 + yy // 8) % 2 == 0] += 100  # texture, so a drawn image is not flat
            ds.PixelData = img.tobytes()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.save_as(out / f"{k:05d}.dcm", enforce_file_format=True)


if __name__ == "__main__":
    main()
