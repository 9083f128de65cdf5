"""Fixtures for the RADRIS integration tests.

Environment:
  RADRIS_BIN          server binary (default /work/main/target/debug/radris)
  RADRIS_E2E_POSTGRES_URL  when set (an admin URL such as postgres://postgres@127.0.0.1/postgres),
                      every server gets its own fresh PostgreSQL database as its index
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import dimse  # noqa: E402

RADRIS_BIN = os.environ.get("RADRIS_BIN", "/work/main/target/debug/radris")
E2E_POSTGRES = os.environ.get("RADRIS_E2E_POSTGRES_URL")
READY_TIMEOUT = 60

os.environ["TCP_NODELAY"] = "1"


_LIVE_SERVERS: list["Server"] = []


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def dcmtk_env() -> dict:
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"
    return env


def fresh_postgres_database() -> str:
    """Create an empty database on the E2E PostgreSQL server; return its URL."""
    import uuid
    name = f"radris_e2e_{uuid.uuid4().hex[:16]}"
    subprocess.run(["psql", E2E_POSTGRES, "-qc", f"CREATE DATABASE {name}"], check=True,
                   capture_output=True)
    return E2E_POSTGRES.rsplit("/", 1)[0] + "/" + name


def run_radris(*args, timeout=600, check=False, env=None) -> subprocess.CompletedProcess:
    cp = subprocess.run([RADRIS_BIN, *map(str, args)], capture_output=True, text=True,
                        timeout=timeout, env=env)
    if check and cp.returncode != 0:
        raise AssertionError(f"radris {' '.join(map(str, args))} failed rc={cp.returncode}\n"
                             f"stdout:\n{cp.stdout[-4000:]}\nstderr:\n{cp.stderr[-4000:]}")
    return cp


CONFIG_TEMPLATE = """\
[[tenants]]
name = "default"
open = {open}

[[tenants]]
name = "other"

[[remote_aes]]
ae_title = "TESTSCU"
tenant = "default"
host = "127.0.0.1"
port = {test_port}

[[remote_aes]]
ae_title = "OTHERSCU"
tenant = "other"
host = "127.0.0.1"
port = {other_port}
"""


def cookie_session(api: str, user: str, password: str, tenant: str = "default"):
    """A requests session signed in with a password (the session cookie, sent by hand:
    requests does not send Secure cookies over plain http)."""
    import requests
    r = requests.post(f"{api}/auth/login",
                      json={"tenant": tenant, "user": user, "password": password})
    assert r.status_code == 200, r.text
    secret = r.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    s = requests.Session()
    s.headers["Cookie"] = f"radris_session={secret}"
    return s


#: The department the RIS and report tests work in: user → roles.
DEPARTMENT = {"tech": "technologist", "alice": "radiologist", "bob": "radiologist",
              "carl": "referring"}


def create_users(admin, api: str, password: str, users: dict[str, str] = DEPARTMENT) -> None:
    """Create accounts (user → comma-separated roles) through the admin API."""
    for user, roles in users.items():
        r = admin.put(f"{api}/admin/users/{user}", json={"password": password, "roles": roles})
        assert r.status_code in (200, 201), r.text


class Server:
    """A RADRIS (or, for debugging, Orthanc) server process on a data dir."""

    def __init__(self, workdir: Path, open_ae: bool = False, extra_config: str = "",
                 https_ca: Path | None = None):
        self.workdir = Path(workdir)
        # HTTPS: the CA that signed the server certificate (readiness checks verify it)
        self.https_ca = https_ca
        self.scheme = "https" if https_ca else "http"
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.http_port = free_port()
        self.move_port = free_port()        # TESTSCU's C-MOVE destination port
        self.other_move_port = free_port()  # OTHERSCU's C-MOVE destination port
        self.open_ae = open_ae
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "server.log"
        self.config_path = self.workdir / "radris.toml"
        self.config_path.write_text(CONFIG_TEMPLATE.format(
            open="true" if open_ae else "false", test_port=self.move_port,
            other_port=self.other_move_port) + extra_config)
        self.starts = 0
        self.started_once = False
        # the index: SQLite in the data dir, or a database of its own on the E2E PostgreSQL
        self.env = dict(os.environ, TCP_NODELAY="1")
        if E2E_POSTGRES:
            self.env["RADRIS_DATABASE_URL"] = fresh_postgres_database()

    # -- lifecycle
    def _cmd(self) -> list[str]:
        cmd = [RADRIS_BIN, "serve", "--data-dir", str(self.data_dir),
               "--dicom-listen", f"127.0.0.1:{self.port}",
               "--http-listen", f"127.0.0.1:{self.http_port}",
               "--ae-title", dimse.SERVER_AET, "--config", str(self.config_path)]
        if self.open_ae:
            cmd.append("--open-ae")
        return cmd

    def start(self):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        if not os.path.exists(RADRIS_BIN):
            pytest.fail(f"server binary {RADRIS_BIN} not found (build it first)")
        for attempt in range(3):
            self.starts += 1
            log = open(self.log_path, "ab")
            log.write(f"\n===== start #{self.starts} {time.ctime()} =====\n".encode())
            log.flush()
            env = dict(self.env)
            env.setdefault("RUST_BACKTRACE", "1")
            self.proc = subprocess.Popen(self._cmd(), stdout=log, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True)
            log.close()
            if self not in _LIVE_SERVERS:
                _LIVE_SERVERS.append(self)
            try:
                self.wait_ready()
                self.started_once = True
                return self
            except AssertionError:
                # free_port() closes its probe socket before the server binds, and an outgoing
                # connection (the tests', PostgreSQL's) may take that ephemeral port meanwhile:
                # a first start may pick other ports; a restart must keep its own
                lost_port = (self.proc.poll() is not None
                             and "Address already in use" in self.log_tail())
                if attempt == 2 or self.started_once or not lost_port:
                    raise
                self.port, self.http_port = free_port(), free_port()
        return self

    def _ssl_context(self):
        if not self.https_ca:
            return None
        import ssl
        return ssl.create_default_context(cafile=str(self.https_ca))

    def _http_status(self, path: str) -> int | None:
        try:
            with urllib.request.urlopen(f"{self.scheme}://127.0.0.1:{self.http_port}{path}",
                                        timeout=2, context=self._ssl_context()) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except Exception:
            return None

    def http_get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"{self.scheme}://127.0.0.1:{self.http_port}{path}",
                                        timeout=10, context=self._ssl_context()) as r:
                return r.status, r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def wait_ready(self, timeout: float = READY_TIMEOUT):
        path = "/readyz"
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited rc={self.proc.returncode} during startup\n"
                                     + self.log_tail())
            if self._http_status(path) == 200:
                # DIMSE must answer too
                if dimse.echo(self.port) == 0:
                    return
            time.sleep(0.2)
        raise AssertionError(f"server not ready after {timeout}s\n" + self.log_tail())

    def stop(self, timeout: float = 20):
        """SIGTERM, then SIGKILL.  Returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        return self.proc.returncode

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def restart(self, hard: bool = False):
        if hard:
            self.kill9()
        else:
            self.stop()
        return self.start()

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return f"--- server log tail ({self.log_path}) ---\n" + "\n".join(lines[-n:])

    # -- HTTP
    @property
    def dicomweb(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.http_port}/dicom-web"

    def token(self, tenant: str = "default", scope: str = "read,write,delete",
              user: str = "tester") -> str:
        """A fresh API token from `radris admin token create` (works beside the server)."""
        cp = run_radris("admin", "token", "create", "--data-dir", self.data_dir,
                        "--config", self.config_path, "--tenant", tenant, "--user", user,
                        "--scope", scope, check=True, env=self.env)
        return cp.stdout.strip()

    def session(self, tenant: str = "default", scope: str = "read,write,delete"):
        """A requests session that sends a bearer token of `tenant`."""
        import requests
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {self.token(tenant, scope)}"
        return s

    # -- admin
    def verify(self) -> tuple[int, str]:
        """`radris admin verify` (server state unchanged)."""
        cp = run_radris("admin", "verify", "--data-dir", self.data_dir, timeout=600, env=self.env)
        return cp.returncode, cp.stdout + cp.stderr

    def assert_verify_clean(self, expect_objects: int | None = None):
        rc, out = self.verify()
        assert rc == 0, f"admin verify rc={rc}\n{out}"
        import re
        m = re.search(r"verify: (\d+) objects ok, (\d+) mismatches, (\d+) missing, (\d+) orphans",
                      out)
        assert m, f"no verify summary line in output:\n{out}"
        n, mism, miss, orph = map(int, m.groups())
        assert (mism, miss, orph) == (0, 0, 0), out
        if expect_objects is not None:
            assert n == expect_objects, out
        return n


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One fresh server (own data dir) per test module."""
    srv = Server(tmp_path_factory.mktemp("srv"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def server_factory(tmp_path_factory):
    made = []

    def make(open_ae=False, start=True, extra_config=""):
        s = Server(tmp_path_factory.mktemp("srvf"), open_ae=open_ae, extra_config=extra_config)
        made.append(s)
        if start:
            s.start()
        return s

    yield make
    for s in made:
        s.stop()


class Series:
    def __init__(self, directory: Path):
        import pydicom
        self.dir = directory
        self.files = sorted(directory.glob("*.dcm"))
        self.by_uid: dict[str, Path] = {}
        self.bytes_by_uid: dict[str, bytes] = {}
        self.uid_by_file: dict[str, str] = {}
        studies, series = set(), set()
        for f in self.files:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            uid = str(ds.SOPInstanceUID)
            self.by_uid[uid] = f
            self.uid_by_file[str(f)] = uid
            self.uid_by_file[f.name] = uid
            self.bytes_by_uid[uid] = dimse.file_info(f)[1]
            studies.add(str(ds.StudyInstanceUID))
            series.add(str(ds.SeriesInstanceUID))
            self.sop_class = str(ds.SOPClassUID)
            self.ts = str(ds.file_meta.TransferSyntaxUID)
            self.patient_id = str(ds.PatientID)
        assert len(studies) == 1 and len(series) == 1, (studies, series)
        self.study_uid = studies.pop()
        self.series_uid = series.pop()


@pytest.fixture(scope="session")
def ct_series(tmp_path_factory) -> Series:
    """The 300-slice 512x512 synthetic CT series, generated once per session."""
    out = tmp_path_factory.mktemp("ct300")
    run_radris("generate", "ct", "--out", out, "--slices", 300, "--rows", 512,
               "--cols", 512, "--seed", 1, check=True)
    s = Series(out)
    assert len(s.files) == 300, f"expected 300 generated files, got {len(s.files)}"
    assert not [p for p in out.iterdir() if p.suffix != ".dcm"], "generator wrote non-.dcm files"
    return s


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for s in _LIVE_SERVERS[-3:]:
            rep.sections.append((f"server {s.workdir}", s.log_tail(80)))
