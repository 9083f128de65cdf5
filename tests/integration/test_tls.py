"""TLS: HTTPS (TLS 1.3, HSTS) and DICOM TLS (PS3.15 Annex B) against dcmtk's storescu/echoscu.

Certificates are made here with the openssl CLI: a test CA, a server certificate for
127.0.0.1, a client certificate from the same CA and one from a rogue CA.
"""
import socket
import ssl
import subprocess
from pathlib import Path

import pydicom
import pytest
import requests

import dimse
from conftest import Server, dcmtk_env, free_port, run_radris

STORESCU = "/usr/bin/storescu"
ECHOSCU = "/usr/bin/echoscu"


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(d: Path, name: str):
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def _leaf(d: Path, name: str, ca: str, ext: str):
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    (d / f"{name}.ext").write_text(ext)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-days", "2", "-out", f"{name}.pem",
             "-extfile", f"{name}.ext", cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    _ca(d, "ca")
    _ca(d, "rogue")
    _leaf(d, "server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
          "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    _leaf(d, "client", "ca", "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    _leaf(d, "intruder", "rogue", "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    return d


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, pki):
    tls_port = free_port()
    cfg = f"""
[tls]
cert_file = "{pki / 'server.pem'}"
key_file = "{pki / 'server.key'}"
client_ca_file = "{pki / 'ca.pem'}"
http = true
dicom_listen = "127.0.0.1:{tls_port}"
"""
    srv = Server(tmp_path_factory.mktemp("tls"), extra_config=cfg, https_ca=pki / "ca.pem")
    srv.tls_port = tls_port
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def some_files(tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("tlsct")
    run_radris("generate", "ct", "--out", out, "--slices", 3, "--rows", 64, "--cols", 64,
               "--seed", 7, check=True)
    return sorted(out.glob("*.dcm"))


def _dcmtk(tool, *args):
    return subprocess.run([tool, *map(str, args)], capture_output=True, text=True,
                          env=dcmtk_env(), timeout=60)


def test_storescu_over_tls_with_client_certificate(tls_server, pki, some_files):
    cp = _dcmtk(STORESCU, "+tls", pki / "client.key", pki / "client.pem",
                "+cf", pki / "ca.pem", "-aet", dimse.TESTSCU, "-aec", dimse.SERVER_AET,
                "127.0.0.1", tls_server.tls_port, *some_files)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    # stored as sent: query them back over the plain port
    study = str(pydicom.dcmread(some_files[0], stop_before_pixels=True).StudyInstanceUID)
    found = dimse.find(tls_server.port, dimse.make_query("IMAGE", StudyInstanceUID=study,
                                                         SOPInstanceUID=""))
    assert len(found) == len(some_files)
    # and echo works over TLS too
    cp = _dcmtk(ECHOSCU, "+tls", pki / "client.key", pki / "client.pem", "+cf", pki / "ca.pem",
                "-aet", dimse.TESTSCU, "-aec", dimse.SERVER_AET, "127.0.0.1",
                tls_server.tls_port)
    assert cp.returncode == 0, cp.stdout + cp.stderr


def test_dicom_tls_refuses_clients_without_a_trusted_certificate(tls_server, pki, some_files):
    # anonymous TLS: no client certificate
    cp = _dcmtk(ECHOSCU, "+tla", "+cf", pki / "ca.pem", "-aet", dimse.TESTSCU,
                "-aec", dimse.SERVER_AET, "127.0.0.1", tls_server.tls_port)
    assert cp.returncode != 0, cp.stdout + cp.stderr
    # a certificate from a CA we do not trust
    cp = _dcmtk(ECHOSCU, "+tls", pki / "intruder.key", pki / "intruder.pem",
                "+cf", pki / "ca.pem", "-aet", dimse.TESTSCU, "-aec", dimse.SERVER_AET,
                "127.0.0.1", tls_server.tls_port)
    assert cp.returncode != 0, cp.stdout + cp.stderr
    # plain DICOM on the TLS port: no association
    assert dimse.echo(tls_server.tls_port) != 0
    assert tls_server.is_running()


def test_dicom_tls_still_checks_the_calling_ae(tls_server, pki):
    cp = _dcmtk(ECHOSCU, "+tls", pki / "client.key", pki / "client.pem", "+cf", pki / "ca.pem",
                "-aet", "STRANGER", "-aec", dimse.SERVER_AET, "127.0.0.1", tls_server.tls_port)
    assert cp.returncode != 0, cp.stdout + cp.stderr


def test_https_prefers_tls13_and_sends_hsts(tls_server, pki):
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    with socket.create_connection(("127.0.0.1", tls_server.http_port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() == "TLSv1.3"
    r = requests.get(f"https://127.0.0.1:{tls_server.http_port}/healthz",
                     verify=str(pki / "ca.pem"), timeout=10)
    assert r.status_code == 200
    assert r.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    # the API still wants credentials over TLS
    r = requests.get(f"{tls_server.dicomweb}/studies", verify=str(pki / "ca.pem"), timeout=10)
    assert r.status_code == 401
    token = tls_server.token()
    r = requests.get(f"{tls_server.dicomweb}/studies", verify=str(pki / "ca.pem"), timeout=10,
                     headers={"Authorization": f"Bearer {token}"})
    assert r.status_code in (200, 204)


def test_https_port_never_answers_in_clear(tls_server, pki):
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{tls_server.http_port}/healthz", timeout=5)
    # a stalled handshake does not block others
    with socket.create_connection(("127.0.0.1", tls_server.http_port), timeout=5):
        r = requests.get(f"https://127.0.0.1:{tls_server.http_port}/healthz",
                         verify=str(pki / "ca.pem"), timeout=10)
        assert r.status_code == 200


def test_tls_config_without_a_key_is_refused(tmp_path):
    cp = run_radris("serve", "--data-dir", tmp_path / "d", "--http-tls",
                    "--http-listen", f"127.0.0.1:{free_port()}",
                    "--dicom-listen", f"127.0.0.1:{free_port()}", timeout=30)
    assert cp.returncode != 0
    assert "cert_file and key_file are required" in cp.stderr
