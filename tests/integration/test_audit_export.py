"""The audit log leaves RADRIS in standard forms: DICOM PS3.15 A.5 audit messages over
syslog (RFC 5424) on TLS (RFC 5425 octet counting) to an audit record repository, and FHIR
R4 AuditEvent / DICOM XML exports for auditors."""
import socket
import ssl
import threading
import time
import xml.etree.ElementTree as ET

import pytest

from conftest import Server, free_port
from test_tls import _ca, _leaf


def mentions(message: str, marker: str) -> bool:
    """Whether an audit message names `marker`, in clear or in a base64 query/detail."""
    import base64
    import re
    if marker in message:
        return True
    for value in re.findall(r'"([A-Za-z0-9+/=]{16,})"', message):
        try:
            if marker in base64.b64decode(value).decode("utf-8", "replace"):
                return True
        except ValueError:
            continue
    return False


class SyslogTlsReceiver:
    """A minimal audit record repository: TLS, octet-counted RFC 5425 frames."""

    def __init__(self, cert, key):
        self.port = free_port()
        self.messages: list[str] = []
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", self.port))
        self.sock.settimeout(0.5)
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._conn, args=(raw,), daemon=True).start()

    def _conn(self, raw):
        try:
            tls = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            return
        buf = b""
        tls.settimeout(1.0)
        while not self.stop:
            try:
                chunk = tls.recv(65536)
            except (TimeoutError, socket.timeout):
                continue
            except (ssl.SSLError, OSError):
                return
            if not chunk:
                return
            buf += chunk
            while b" " in buf:
                n, rest = buf.split(b" ", 1)
                length = int(n)
                if len(rest) < length:
                    break
                self.messages.append(rest[:length].decode("utf-8"))
                buf = rest[length:]

    def wait_for(self, pred, timeout=15.0):
        end = time.time() + timeout
        while time.time() < end:
            if pred(self.messages):
                return True
            time.sleep(0.2)
        return False

    def close(self):
        self.stop = True
        self.sock.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("arr")
    _ca(d, "ca")
    _leaf(d, "arr", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
          "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    rx = SyslogTlsReceiver(str(d / "arr.pem"), str(d / "arr.key"))
    cfg = f"""
[audit_syslog]
addr = "127.0.0.1:{rx.port}"
ca_file = "{d / 'ca.pem'}"
hostname = "pacs.test"
"""
    srv = Server(tmp_path_factory.mktemp("auditx"), extra_config=cfg)
    srv.start()
    yield srv, rx
    srv.stop()
    rx.close()


def test_audit_records_reach_the_repository_over_tls(setup):
    srv, rx = setup
    s = srv.session(scope="read,admin")
    marker = "1.2.826.0.1.3680043.9.5555.1"
    assert s.get(f"{srv.dicomweb}/studies", params={"StudyInstanceUID": marker}).status_code in (200, 204)
    assert rx.wait_for(lambda ms: any(mentions(m, marker) for m in ms)), rx.messages[-3:]
    msg = next(m for m in rx.messages if mentions(m, marker))
    header, _, body = msg.partition("\ufeff")
    fields = header.split(" ")
    assert fields[0] in ("<85>1", "<84>1"), fields
    assert fields[2] == "pacs.test" and fields[3] == "radris" and fields[5] == "IHE+RFC-3881"
    root = ET.fromstring(body.split("?>", 1)[1] if body.startswith("<?xml") else body)
    assert root.tag == "AuditMessage"
    assert root.find("EventIdentification") is not None
    assert root.find("AuditSourceIdentification").get("AuditSourceID").startswith("RADRIS@")
    # every record is sent once, in order; a restart resumes after the last one sent
    n_before = len(rx.messages)
    srv.restart()
    s = srv.session(scope="read,admin")
    marker2 = "1.2.826.0.1.3680043.9.5555.2"
    s.get(f"{srv.dicomweb}/studies", params={"StudyInstanceUID": marker2})
    assert rx.wait_for(lambda ms: any(mentions(m, marker2) for m in ms))
    assert sum(mentions(m, marker) for m in rx.messages) == sum(mentions(m, marker) for m in rx.messages[:n_before])


def test_fhir_and_dicom_exports(setup):
    srv, _ = setup
    s = srv.session(scope="read,admin")
    marker = "1.2.826.0.1.3680043.9.5555.3"
    s.get(f"{srv.dicomweb}/studies", params={"StudyInstanceUID": marker})
    api = f"http://127.0.0.1:{srv.http_port}/api/v1/audit/export"
    for _ in range(50):
        r = s.get(api, params={"format": "fhir", "action": "http GET /dicom-web"})
        if r.status_code == 200 and r.json().get("total", 0) > 0:
            break
        time.sleep(0.1)
    assert r.headers["Content-Type"].startswith("application/fhir+json")
    bundle = r.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    ev = bundle["entry"][0]["resource"]
    assert ev["resourceType"] == "AuditEvent"
    assert ev["type"]["system"] == "http://dicom.nema.org/resources/ontology/DCM"
    assert ev["recorded"].endswith("Z") and ev["agent"] and ev["source"]
    r = s.get(api, params={"format": "dicom", "action": "http GET /dicom-web"})
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/xml"
    root = ET.fromstring(r.content)
    assert root.tag == "AuditMessages" and len(root.findall("AuditMessage")) >= 1
    assert s.get(api, params={"format": "hl7"}).status_code == 400
    # another tenant's auditor sees none of it; a reader cannot export at all
    other = srv.session(tenant="other", scope="admin")
    assert other.get(api, params={"action": "http GET /dicom-web"}).json()["total"] == 0
    assert srv.session(scope="read").get(api).status_code == 403
