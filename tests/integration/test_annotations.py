"""The web viewer's annotation documents (/api/v1/studies/{uid}/annotations): one document per
user and study, saved with optimistic concurrency, reached with a session cookie or a token,
invisible to other users and other tenants, validated, audited, and removed with the study."""
from __future__ import annotations

import io
import json
import time

import pytest
import requests
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from conftest import Server, cookie_session
from dicomweb_util import part10, stow

PASSWORD = "moonlit ferry over quiet harbour"
EMPTY = {"measurements": [], "keyImages": []}


def instance(patient: str) -> bytes:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = patient
    ds.PatientName = f"Annot^{patient}"
    ds.StudyDate = "20240101"
    ds.StudyTime = "120000"
    ds.AccessionNumber = f"ACC{patient}"
    ds.Modality = "CT"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    return part10(ds)


def study_uid_of(blob: bytes) -> str:
    import pydicom
    return str(pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True).StudyInstanceUID)


def measurement(i: int) -> dict:
    return {"id": f"m{i}", "type": "length", "sopInstanceUid": "1.2.3", "frame": 1,
            "points": [[1.5, 2.5], [10.0, 20.25]], "value": 12.5 + i, "unit": "mm",
            "label": f"nodule {i} ü"}


def doc(n_measurements: int = 1, n_key: int = 0, **extra) -> dict:
    return {"measurements": [measurement(i) for i in range(n_measurements)],
            "keyImages": [{"sopInstanceUid": f"1.2.{i}", "frame": 1} for i in range(n_key)],
            **extra}


class Env:
    def __init__(self, srv: Server):
        self.srv = srv
        self.api = f"http://127.0.0.1:{srv.http_port}/api/v1"
        self.admin = srv.session(scope="read,write,delete,admin")
        for user in ("alice", "bob"):
            r = self.admin.put(f"{self.api}/admin/users/{user}",
                               json={"password": PASSWORD, "roles": "radiologist"})
            assert r.status_code in (200, 201), r.text
        self.blobs = {name: instance(f"AN-{name}") for name in ("a", "b", "c", "d")}
        r = stow(self.admin, srv.dicomweb, list(self.blobs.values()))
        assert r.status_code == 200, r.text
        self.study = {name: study_uid_of(b) for name, b in self.blobs.items()}
        self.cookie = {u: self.login(u) for u in ("alice", "bob")}

    def login(self, user: str, tenant: str = "default") -> requests.Session:
        return cookie_session(self.api, user, PASSWORD, tenant)

    def bearer(self, user: str, scope: str = "read,write", tenant: str = "default"):
        s = requests.Session()
        s.headers["Authorization"] = "Bearer " + self.srv.token(tenant, scope, user=user)
        return s

    def url(self, study: str) -> str:
        return f"{self.api}/studies/{study}/annotations"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("annotations"))
    srv.start()
    yield Env(srv)
    srv.stop()


def assert_problem(r: requests.Response, status: int | tuple[int, ...]):
    statuses = status if isinstance(status, tuple) else (status,)
    assert r.status_code in statuses, (r.status_code, r.text[:300])
    assert r.headers["Content-Type"] == "application/problem+json", r.headers
    body = r.json()
    assert body["status"] == r.status_code and body["detail"], body


def test_round_trip_with_a_session_cookie_and_a_token(env):
    alice = env.cookie["alice"]
    url = env.url(env.study["a"])
    r = alice.get(url)
    assert r.status_code == 200, r.text
    assert r.json() == {"version": 0, "document": EMPTY}
    assert r.headers["Cache-Control"] == "no-store"
    first = doc(2, 1, viewer={"layout": "1x2"})
    before = int(time.time())
    r = alice.put(url, json={"version": 0, "document": first})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1
    got = alice.get(url).json()
    assert got["version"] == 1 and got["document"] == first
    assert before - 1 <= got["updated_at"] <= time.time() + 1
    # the same person with an API token sees and writes the same document
    token = env.bearer("alice")
    assert token.get(url).json() == got
    second = doc(3, 2)
    r = token.put(url, json={"version": 1, "document": second})
    assert r.status_code == 200 and r.json()["version"] == 2, r.text
    assert alice.get(url).json()["document"] == second
    # a read-only credential reads but does not write
    ro = env.bearer("alice", scope="read")
    assert ro.get(url).json()["version"] == 2
    assert_problem(ro.put(url, json={"version": 2, "document": EMPTY}), 403)
    # the saves are audited with the study and the counts
    def audited(entries):
        return any(e["outcome"] == "success" and f"study={env.study['a']}" in e["detail"]
                   and "measurements=3" in e["detail"] and "key_images=2" in e["detail"]
                   and "version=2" in e["detail"] and e["actor"] for e in entries) \
            and any(e["outcome"] == "denied" for e in entries)
    for _ in range(50):  # the audit writer commits in batches
        entries = env.admin.get(f"{env.api}/audit", params={
            "action": "http PUT /api/v1/studies/{study_uid}/annotations", "limit": 100}).json()
        if audited(entries):
            break
        time.sleep(0.1)
    assert audited(entries), entries


def test_version_conflict_changes_nothing(env):
    alice = env.cookie["alice"]
    url = env.url(env.study["b"])
    mine = doc(1)
    assert alice.put(url, json={"version": 0, "document": mine}).json()["version"] == 1
    # another tab that also started from nothing, or from a version that never was
    for stale in (0, 2, 99):
        r = alice.put(url, json={"version": stale, "document": doc(5)})
        assert_problem(r, 409)
    # a tab that saw version 1 saves; the first tab, still on 1, is refused
    assert alice.put(url, json={"version": 1, "document": doc(2)}).json()["version"] == 2
    assert_problem(alice.put(url, json={"version": 1, "document": doc(7)}), 409)
    got = alice.get(url).json()
    assert got["version"] == 2 and got["document"] == doc(2)


def test_a_second_user_has_a_document_of_their_own(env):
    url = env.url(env.study["a"])
    alice_doc = env.cookie["alice"].get(url).json()
    assert alice_doc["version"] >= 1
    bob = env.cookie["bob"]
    assert bob.get(url).json() == {"version": 0, "document": EMPTY}
    # bob starts from nothing: his save is a new document, not a conflict with alice's
    r = bob.put(url, json={"version": 0, "document": doc(4)})
    assert r.status_code == 200 and r.json()["version"] == 1, r.text
    assert bob.get(url).json()["document"] == doc(4)
    assert env.cookie["alice"].get(url).json() == alice_doc


def test_another_tenant_gets_404_and_nothing_leaks(env):
    url = env.url(env.study["a"])
    before = env.cookie["alice"].get(url).json()
    # the same user name in another tenant, with every scope
    for other in (env.bearer("alice", "read,write,delete,admin", tenant="other"),
                  env.bearer("intruder", "read,write,delete,admin", tenant="other")):
        r = other.get(url)
        assert_problem(r, 404)
        assert "nodule" not in r.text and "measurements" not in r.text
        assert_problem(other.put(url, json={"version": 0, "document": doc(1)}), 404)
        assert_problem(other.put(url, json={"version": before["version"],
                                             "document": doc(1)}), 404)
    assert env.cookie["alice"].get(url).json() == before
    assert env.bearer("intruder", tenant="other").get(
        f"{env.api}/studies").json()["items"] == []


@pytest.mark.parametrize("body", [
    {"version": 0, "document": []},
    {"version": 0, "document": "measurements"},
    {"version": 0, "document": None},
    {"version": 0, "document": {}},
    {"version": 0, "document": {"measurements": []}},
    {"version": 0, "document": {"keyImages": []}},
    {"version": 0, "document": {"measurements": {}, "keyImages": []}},
    {"version": 0, "document": {"measurements": [], "keyImages": "x"}},
    {"version": 0, "document": {"measurements": [{}] * 5001, "keyImages": []}},
    {"version": 0, "document": {"measurements": [], "keyImages": [1] * 10001}},
    {"version": -1, "document": EMPTY},
    {"version": "1", "document": EMPTY},
    {"document": EMPTY},
    {"version": 0},
    {"version": 0, "document": EMPTY, "user": "bob"},
    [],
])
def test_malformed_documents_are_refused(env, body):
    alice = env.cookie["alice"]
    url = env.url(env.study["c"])
    r = alice.put(url, json=body)
    assert_problem(r, (400, 422))
    assert alice.get(url).json() == {"version": 0, "document": EMPTY}


def test_unparseable_oversized_and_unlabelled_bodies(env):
    alice = env.cookie["alice"]
    url = env.url(env.study["c"])
    assert_problem(alice.put(url, data="{", headers={"Content-Type": "application/json"}),
                   (400, 422))
    assert_problem(alice.put(url, data=json.dumps({"version": 0, "document": EMPTY})), 415)
    big = {"version": 0, "document": {"measurements": [], "keyImages": [],
                                      "blob": "x" * (2 << 20)}}
    assert_problem(alice.put(url, json=big), 413)
    assert alice.get(url).json() == {"version": 0, "document": EMPTY}
    # the limits themselves are allowed, and a document above the API's usual 1 MiB body
    at_limit = {"measurements": [measurement(i) for i in range(5000)],
                "keyImages": [{"sopInstanceUid": "1.2.3", "frame": i} for i in range(10000)]}
    body = json.dumps({"version": 0, "document": at_limit})
    assert 1 << 20 < len(body) < 2 << 20, len(body)
    r = alice.put(url, data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text[:300]
    got = alice.get(url).json()
    assert len(got["document"]["measurements"]) == 5000
    assert len(got["document"]["keyImages"]) == 10000


def test_unknown_study_and_bad_uid(env):
    alice = env.cookie["alice"]
    missing = env.url(generate_uid())
    assert_problem(alice.get(missing), 404)
    assert_problem(alice.put(missing, json={"version": 0, "document": EMPTY}), 404)
    assert_problem(alice.get(env.url("not-a-uid")), 400)
    assert_problem(alice.put(env.url("1..2"), json={"version": 0, "document": EMPTY}), 400)
    assert_problem(requests.get(env.url(env.study["a"])), 401)


def test_deleting_the_study_removes_its_documents(env):
    url = env.url(env.study["d"])
    for user in ("alice", "bob"):
        r = env.cookie[user].put(url, json={"version": 0, "document": doc(1)})
        assert r.status_code == 200, r.text
    r = env.admin.delete(f"{env.api}/studies/{env.study['d']}")
    assert r.status_code == 200, r.text
    assert_problem(env.cookie["alice"].get(url), 404)
    # the same study stored again starts without annotations
    r = stow(env.admin, env.srv.dicomweb, [env.blobs["d"]])
    assert r.status_code == 200, r.text
    for user in ("alice", "bob"):
        assert env.cookie[user].get(url).json() == {"version": 0, "document": EMPTY}


def test_routes_are_in_the_openapi_document(env):
    doc_ = requests.get(f"http://127.0.0.1:{env.srv.http_port}/api/openapi.json").json()
    ops = doc_["paths"]["/api/v1/studies/{study_uid}/annotations"]
    assert set(ops) >= {"get", "put"}
    assert "409" in ops["put"]["responses"]
