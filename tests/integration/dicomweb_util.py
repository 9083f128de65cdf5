"""Small DICOMweb helpers for the tests: multipart encode/decode with the standard library."""
from __future__ import annotations

import email.parser
import email.policy
import io
import uuid
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian


def part10(ds: Dataset) -> bytes:
    """A data set as a Part-10 file (Explicit VR Little Endian), ready to STOW."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def multipart_body(parts: list[bytes], part_type: str = "application/dicom") -> tuple[bytes, str]:
    boundary = f"test-{uuid.uuid4().hex}"
    out = bytearray()
    for p in parts:
        out += f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode()
        out += p
        out += b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    ctype = f'multipart/related; type="{part_type}"; boundary={boundary}'
    return bytes(out), ctype


def split_multipart(body: bytes, content_type: str) -> list[tuple[dict, bytes]]:
    """Parts of a multipart/related response as (headers, payload)."""
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    assert msg.is_multipart(), content_type
    out = []
    for part in msg.iter_parts():
        out.append(({k.lower(): v for k, v in part.items()}, part.get_payload(decode=True)))
    return out


def stow(session, base: str, files: list[Path] | list[bytes], study: str | None = None):
    blobs = [f if isinstance(f, bytes) else Path(f).read_bytes() for f in files]
    body, ctype = multipart_body(blobs)
    url = f"{base}/studies" + (f"/{study}" if study else "")
    return session.post(url, data=body, headers={"Content-Type": ctype,
                                                 "Accept": "application/dicom+json"})
