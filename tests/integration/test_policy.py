"""Cedar authorisation end to end: accounts of each role with sites and person names, studies
with ReferringPhysicianName and sites (STOW by a technologist, C-STORE through an AE with a
site), list filtering (QIDO and REST, with paging), 403 on single studies, break-glass with its
audit records, auditors, policy administration (syntax errors, a custom forbid taking effect at
once, reset) and tenant isolation of policies."""
from __future__ import annotations

import time

import pytest
import requests
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

import dimse
from conftest import Server, free_port, run_radris
from dicomweb_util import part10, stow

PASSWORD = "moonlit ferry over quiet harbour"
STUDY_UID = "0020000D"


def instance(patient: str, referring: str, study_uid: str | None = None) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = patient
    ds.PatientName = f"Policy^{patient}"
    ds.ReferringPhysicianName = referring
    ds.StudyDate = "20240101"
    ds.StudyTime = "120000"
    ds.AccessionNumber = f"ACC{patient}"
    ds.Modality = "OT"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    return ds


class Env:
    """The server, its accounts and studies."""

    def __init__(self, srv: Server):
        self.srv = srv
        self.api = f"http://127.0.0.1:{srv.http_port}/api/v1"
        self.web = srv.dicomweb
        self.studies: dict[str, str] = {}
        self.patients: dict[str, str] = {}

    def bearer(self, user: str, scope: str, tenant: str = "default") -> requests.Session:
        s = requests.Session()
        s.headers["Authorization"] = "Bearer " + self.srv.token(tenant, scope, user=user)
        return s

    def login(self, user: str, password: str) -> requests.Session:
        r = requests.post(f"{self.api}/auth/login",
                          json={"tenant": "default", "user": user, "password": password})
        assert r.status_code == 200, r.text
        secret = r.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
        s = requests.Session()
        # requests does not send Secure cookies over http: send it by hand
        s.headers["Cookie"] = f"radris_session={secret}"
        return s

    def audit(self, **params) -> list[dict]:
        r = self.admin.get(f"{self.api}/audit", params={"limit": 1000, **params})
        assert r.status_code == 200, r.text
        return r.json()

    def wait_audit(self, pred, **params) -> list[dict]:
        end = time.time() + 10
        while True:
            rows = [e for e in self.audit(**params) if pred(e)]
            if rows or time.time() > end:
                return rows
            time.sleep(0.2)


def qido_uids(s: requests.Session, url: str, **params) -> set[str]:
    r = s.get(url, params=params)
    assert r.status_code == 200, r.text
    return {row[STUDY_UID]["Value"][0] for row in r.json()}


def rest_uids(s: requests.Session, url: str, limit: int = 50) -> list[str]:
    """Every study of a REST list, following cursors."""
    out, cursor = [], None
    for _ in range(100):
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        r = s.get(url, params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        out += [x["study_uid"] for x in page["items"]]
        cursor = page.get("next_cursor")
        if not cursor:
            return out
    raise AssertionError("paging did not end")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("policy")
    north_port = free_port()
    srv = Server(tmp, extra_config=(
        '\n[[remote_aes]]\nae_title = "NORTHSCU"\ntenant = "default"\nhost = "127.0.0.1"\n'
        f'port = {north_port}\nsite = "north"\n'))
    srv.start()
    e = Env(srv)
    pw = tmp / "pw"
    pw.write_text(PASSWORD + "\n")
    run_radris("admin", "bootstrap", "--data-dir", srv.data_dir, "--config", srv.config_path,
               "--tenant", "default", "--user", "root", "--password-file", pw,
               env=srv.env, check=True)
    # an account token: root is an administrator account
    e.admin = e.bearer("root", "read,write,delete,admin")
    e.passwords = {}
    for user, roles, site, name in [
        ("drref", "referring", "", "Ref^Alice"),
        ("drbob", "referring", "", "Ref^Bob"),
        ("rad", "radiologist", "", ""),
        ("tech", "technologist", "north", ""),
        ("aud", "auditor", "", ""),
    ]:
        password = f"{PASSWORD} for {user[::-1]}"
        r = e.admin.put(f"{e.api}/admin/users/{user}", json={
            "roles": roles, "site": site, "person_name": name, "password": password})
        assert r.status_code == 201, r.text
        assert r.json()["created"] and r.json()["site"] == site
        e.passwords[user] = password
    # A: Alice's order (different case and padding: names compare normalised), no site
    # B: Bob's order, no site
    a = instance("PA", "ref^alice ")
    b = instance("PB", "Ref^Bob")
    r = stow(e.admin, e.web, [part10(a), part10(b)])
    assert r.status_code == 200, r.text
    # C: Alice's order, stored through the north AE (C-STORE): site north
    c = instance("PC", "Ref^Alice")
    status, _ = dimse.store_dataset(srv.port, c, aet="NORTHSCU")
    assert status == 0, status
    # D: stored by the north technologist over STOW-RS: site north (the storing user's)
    d = instance("PD", "")
    r = stow(e.bearer("tech", "read,write"), e.web, [part10(d)])
    assert r.status_code == 200, r.text
    e.studies = {"A": a.StudyInstanceUID, "B": b.StudyInstanceUID,
                 "C": c.StudyInstanceUID, "D": d.StudyInstanceUID}
    e.patients = {"A": "PA", "B": "PB", "C": "PC", "D": "PD"}
    yield e
    srv.stop()


def test_referring_physician_sees_only_their_orders(env):
    st = env.studies
    ref = env.login("drref", env.passwords["drref"])
    mine = {st["A"], st["C"]}
    assert qido_uids(ref, f"{env.web}/studies") == mine
    assert {r[STUDY_UID]["Value"][0]
            for r in ref.get(f"{env.web}/instances").json()} == mine
    assert set(rest_uids(ref, f"{env.api}/studies")) == mine
    # paging stays exact when the filter drops rows: one per page, each once
    paged = rest_uids(ref, f"{env.api}/studies", limit=1)
    assert sorted(paged) == sorted(mine)
    # QIDO offset/limit count what the caller may see
    one = ref.get(f"{env.web}/studies", params={"limit": 1})
    assert one.status_code == 200 and len(one.json()) == 1 and "Warning" in one.headers
    two = ref.get(f"{env.web}/studies", params={"limit": 1, "offset": 1}).json()
    assert {one.json()[0][STUDY_UID]["Value"][0], two[0][STUDY_UID]["Value"][0]} == mine
    pats = ref.get(f"{env.api}/patients").json()["items"]
    assert {p["patient_id"] for p in pats} == {"PA", "PC"}
    # single studies: theirs 200, another 403 (problem document), unknown 404
    assert ref.get(f"{env.api}/studies/{st['A']}").status_code == 200
    assert ref.get(f"{env.web}/studies/{st['C']}/metadata").status_code == 200
    r = ref.get(f"{env.api}/studies/{st['B']}")
    assert r.status_code == 403 and r.headers["Content-Type"].startswith("application/problem+json")
    assert ref.get(f"{env.web}/studies/{st['B']}/metadata").status_code == 403
    assert ref.get(f"{env.web}/studies/{st['B']}/series").status_code == 403
    assert ref.get(f"{env.api}/studies/{generate_uid()}").status_code == 404
    # a referring physician stores nothing
    assert stow(ref, env.web, [part10(instance("PX", "Ref^Alice"))]).status_code == 403
    # the denial is audited with Cedar's reasoning
    denied = env.wait_audit(lambda x: x["outcome"] == "denied" and "policy denies read" in x["detail"]
                            and st["B"] in x["resource"], actor="user:drref")
    assert denied, "the 403 must be audited"


def test_break_glass_opens_another_study_and_is_audited(env):
    st = env.studies
    ref = env.bearer("drref", "read")
    assert ref.get(f"{env.api}/studies/{st['B']}").status_code == 403
    # without a reason, or with a too short one: 400
    for body in ({}, {"reason": ""}, {"reason": "because"}):
        r = ref.post(f"{env.api}/auth/break-glass", json=body)
        assert r.status_code == 400, (body, r.status_code, r.text)
    r = ref.post(f"{env.api}/auth/break-glass", json={"minutes": 999, "reason": "x" * 20})
    assert r.status_code == 400
    r = ref.post(f"{env.api}/auth/break-glass",
                 json={"reason": "patient unconscious in ER, prior imaging needed", "minutes": 15})
    assert r.status_code == 201, r.text
    grant = r.json()
    assert grant["user"] == "drref" and grant["scope"] == "tenant:default"
    assert ref.get(f"{env.api}/studies/{st['B']}").status_code == 200
    assert ref.get(f"{env.web}/studies/{st['B']}/metadata").status_code == 200
    assert st["B"] in qido_uids(ref, f"{env.web}/studies")
    opened = env.wait_audit(lambda x: grant["grant_id"] in x["detail"],
                            action="auth.break-glass.open")
    assert opened and "patient unconscious" in opened[0]["detail"]
    access = env.wait_audit(lambda x: st["B"] in x["resource"] and grant["grant_id"] in x["detail"],
                            action="auth.break-glass.access")
    assert access, "an access allowed only by break-glass must be audited as such"
    # reading their own study needs no break-glass: no access record for it
    ref.get(f"{env.api}/studies/{st['A']}")
    time.sleep(0.5)
    assert not [x for x in env.audit(action="auth.break-glass.access")
                if st["A"] in x["resource"]]
    # another user cannot close it; its owner can, and then B is closed again
    bob = env.bearer("drbob", "read")
    assert bob.delete(f"{env.api}/auth/break-glass/{grant['grant_id']}").status_code == 404
    assert ref.delete(f"{env.api}/auth/break-glass/{grant['grant_id']}").status_code == 204
    assert ref.get(f"{env.api}/studies/{st['B']}").status_code == 403
    assert env.wait_audit(lambda x: grant["grant_id"] in x["detail"],
                          action="auth.break-glass.close")
    # auditors and administrators have no break-glass in the shipped policies
    aud = env.bearer("aud", "read,admin")
    assert aud.post(f"{env.api}/auth/break-glass",
                    json={"reason": "just curious about it all"}).status_code == 403


def test_auditor_reads_the_audit_log_but_no_images(env):
    st = env.studies
    aud = env.login("aud", env.passwords["aud"])
    assert aud.get(f"{env.api}/audit").status_code == 200
    assert aud.get(f"{env.web}/studies/{st['A']}/metadata").status_code == 403
    # even a token that carries the read scope: the policies give auditors no study
    aud_token = env.bearer("aud", "read,admin")
    assert aud_token.get(f"{env.api}/audit").status_code == 200
    assert aud_token.get(f"{env.web}/studies/{st['A']}/metadata").status_code == 403
    assert aud_token.get(f"{env.api}/studies/{st['A']}").status_code == 403
    assert qido_uids(aud_token, f"{env.web}/studies") == set()
    # nor administration (admin scope on the token is not enough)
    assert aud_token.get(f"{env.api}/admin/tokens").status_code == 403
    assert aud_token.get(f"{env.api}/admin/policies").status_code == 403


def test_technologist_sees_their_site(env):
    st = env.studies
    tech = env.bearer("tech", "read,write")
    want = {st["C"], st["D"]}
    # C's site is stamped from the AE's site off the event bus: give it a moment
    end = time.time() + 10
    while qido_uids(tech, f"{env.web}/studies") != want and time.time() < end:
        time.sleep(0.2)
    assert qido_uids(tech, f"{env.web}/studies") == want
    assert set(rest_uids(tech, f"{env.api}/studies")) == want
    assert tech.get(f"{env.web}/studies/{st['C']}/metadata").status_code == 200
    assert tech.get(f"{env.web}/studies/{st['A']}/metadata").status_code == 403
    assert tech.get(f"{env.api}/studies/{st['B']}/series").status_code == 403
    # a radiologist and a script token (no account: role from scopes) see everything
    everything = set(st.values())
    assert qido_uids(env.bearer("rad", "read"), f"{env.web}/studies") == everything
    assert qido_uids(env.srv.session(), f"{env.web}/studies") == everything


def test_policy_administration(env):
    api, st = env.api, env.studies
    doc = env.admin.get(f"{api}/admin/policies").json()
    assert doc["is_default"] and "referring-own-orders" in doc["text"]
    default_text = doc["text"]
    # a syntax error: 400 with Cedar's line/column, the old policies stay in force
    bad = default_text + '\n@id("broken")\npermit (principal, action, resource\n'
    r = env.admin.put(f"{api}/admin/policies", data=bad, headers={"Content-Type": "text/plain"})
    assert r.status_code == 400, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    detail = r.json()["detail"]
    assert "line " in detail and "column " in detail, detail
    assert env.admin.get(f"{api}/admin/policies").json()["is_default"]
    ref = env.bearer("drref", "read")
    assert ref.get(f"{api}/studies/{st['B']}").status_code == 403
    # an unknown attribute fails validation against the schema
    r = env.admin.post(f"{api}/admin/policies/validate", json={
        "text": 'permit (principal, action, resource) when { resource.colour == "red" };'})
    assert r.status_code == 200 and r.json()["valid"] is False and r.json()["errors"]
    r = env.admin.post(f"{api}/admin/policies/validate", data=default_text,
                       headers={"Content-Type": "text/plain"})
    assert r.status_code == 200 and r.json()["valid"] is True and r.json()["policies"] > 5
    # radiologists export until a custom policy forbids it; it takes effect at once
    rad = env.bearer("rad", "read,write,admin")
    export = lambda: rad.post(f"{api}/admin/studies/{st['A']}/deidentify", json={})
    assert export().status_code != 403
    custom = default_text + (
        '\n@id("no-radiologist-export")\n'
        'forbid (principal in Radris::Role::"radiologist", '
        'action == Radris::Action::"export", resource);\n')
    r = env.admin.put(f"{api}/admin/policies", json={"text": custom})
    assert r.status_code == 200, r.text
    assert r.json()["is_default"] is False and r.json()["version"] >= 1
    r = export()
    assert r.status_code == 403, r.text
    # reading stays allowed
    assert rad.get(f"{api}/studies/{st['A']}").status_code == 200
    # a radiologist cannot administer, even with an admin-scoped token
    assert rad.put(f"{api}/admin/policies", data="", headers={"Content-Type": "text/plain"}
                   ).status_code == 403
    assert rad.put(f"{api}/admin/users/rad", json={"roles": "admin"}).status_code == 403
    # a set that locks administrators out is refused
    r = env.admin.put(f"{api}/admin/policies", data="forbid (principal, action, resource);",
                      headers={"Content-Type": "text/plain"})
    assert r.status_code == 400, r.text
    # reset to the defaults: exporting works again
    r = env.admin.delete(f"{api}/admin/policies")
    assert r.status_code == 200 and r.json()["is_default"]
    assert export().status_code != 403
    assert env.wait_audit(lambda x: True, action="auth.policy.set")
    assert env.wait_audit(lambda x: True, action="auth.policy.reset")
    assert env.wait_audit(lambda x: "drref" in x["resource"], action="auth.user.set")


def test_account_administration_input(env):
    api = env.api
    r = env.admin.put(f"{api}/admin/users/drref", json={"roles": "wizard"})
    assert r.status_code == 400
    r = env.admin.put(f"{api}/admin/users/nobody", json={"site": "x"})
    assert r.status_code == 404
    r = env.admin.put(f"{api}/admin/users/drref", json={"site": "a\nb"})
    assert r.status_code == 400
    r = env.admin.put(f"{api}/admin/users/drbob", json={"site": "south"})
    assert r.status_code == 200 and r.json()["site"] == "south" and r.json()["roles"] == ["referring"]


def test_tenants_policies_are_isolated(env):
    api = env.api
    other = env.bearer("boss", "read,write,delete,admin", tenant="other")
    assert other.get(f"{api}/admin/policies").json()["is_default"]
    # the tenant comes from the credential only
    assert other.get(f"{api}/admin/policies", params={"tenant": "default"}).status_code == 400
    custom = (other.get(f"{api}/admin/policies").json()["text"]
              + '\n@id("other-only")\nforbid (principal in Radris::Role::"service", '
                'action == Radris::Action::"write", resource);\n')
    assert other.put(f"{api}/admin/policies", json={"text": custom}).status_code == 200
    assert "other-only" in other.get(f"{api}/admin/policies").json()["text"]
    mine = env.admin.get(f"{api}/admin/policies").json()
    assert "other-only" not in mine["text"]
    # other's admin changes nothing of default's accounts either
    assert other.put(f"{api}/admin/users/drref", json={"roles": "admin"}).status_code == 404
    assert env.admin.get(f"{api}/studies/{env.studies['A']}").status_code == 200
    assert other.get(f"{api}/studies/{env.studies['A']}").status_code == 404
    assert other.delete(f"{api}/admin/policies").status_code == 200
