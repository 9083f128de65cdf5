"""People sign in: `radris admin bootstrap`, password login with a session cookie, idle and
explicit logout, lockout, and the audit records of it all."""
from __future__ import annotations

import requests

from conftest import Server, run_radris

PASSWORD = "moonlit ferry over quiet harbour"


def bootstrap(srv: Server, tenant: str, user: str, password: str, tmp_path) -> object:
    f = tmp_path / f"pw-{tenant}-{user}"
    f.write_text(password + "\n")
    return run_radris("admin", "bootstrap", "--data-dir", srv.data_dir, "--config",
                      srv.config_path, "--tenant", tenant, "--user", user,
                      "--password-file", f, env=srv.env)


def test_bootstrap_login_session_logout_lockout(tmp_path):
    srv = Server(tmp_path / "srv")
    srv.start()
    try:
        base = f"http://127.0.0.1:{srv.http_port}/api/v1"
        weak = bootstrap(srv, "default", "root", "Password12345!", tmp_path)
        assert weak.returncode != 0 and "common" in weak.stderr + weak.stdout
        ok = bootstrap(srv, "default", "root", PASSWORD, tmp_path)
        assert ok.returncode == 0, ok.stderr
        again = bootstrap(srv, "default", "second", PASSWORD + " again", tmp_path)
        assert again.returncode != 0 and "already has users" in again.stderr

        s = requests.Session()
        r = s.post(f"{base}/auth/login", json={"tenant": "default", "user": "root",
                                               "password": PASSWORD})
        assert r.status_code == 200, r.text
        cookie = r.headers["Set-Cookie"]
        for flag in ("HttpOnly", "Secure", "SameSite=Strict"):
            assert flag in cookie
        assert r.json()["user"] == "root" and "admin" in r.json()["scopes"]
        # requests does not send Secure cookies over http: send it by hand
        secret = cookie.split(";")[0].split("=", 1)[1]
        jar = {"radris_session": secret}
        who = requests.get(f"{base}/whoami", cookies=jar)
        assert who.status_code == 200 and who.json()["user"] == "root"
        assert requests.get(f"http://127.0.0.1:{srv.http_port}/dicom-web/studies",
                            cookies=jar).status_code == 200
        # logout ends it
        assert requests.post(f"{base}/auth/logout", cookies=jar).status_code == 204
        assert requests.get(f"{base}/whoami", cookies=jar).status_code == 401
        # a forged cookie
        assert requests.get(f"{base}/whoami",
                            cookies={"radris_session": "rds_" + "1" * 64}).status_code == 401
        # wrong passwords: same answer as an unknown user; five lock the account
        bad = requests.post(f"{base}/auth/login", json={"tenant": "default", "user": "root",
                                                        "password": "not the password"})
        unknown = requests.post(f"{base}/auth/login", json={"tenant": "default", "user": "nobody",
                                                            "password": "not the password"})
        assert bad.status_code == unknown.status_code == 401
        assert bad.json()["detail"] == unknown.json()["detail"]
        for _ in range(4):
            requests.post(f"{base}/auth/login", json={"tenant": "default", "user": "root",
                                                      "password": "still not it"})
        locked = requests.post(f"{base}/auth/login", json={"tenant": "default", "user": "root",
                                                           "password": PASSWORD})
        assert locked.status_code == 401
        # bad requests are problem documents, not 500s
        r = requests.post(f"{base}/auth/login", data="{", headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.headers["Content-Type"] == "application/problem+json"
        r = requests.post(f"{base}/auth/login", json={"tenant": "../x", "user": "a", "password": "b"})
        assert r.status_code == 401
        # the audit log holds the sign-ins and the failures
        admin = srv.session(scope="admin")
        log = admin.get(f"{base}/audit", params={"action": "auth.", "limit": 100}).json()
        outcomes = [(e["action"], e["outcome"]) for e in log]
        assert ("auth.login", "success") in outcomes
        assert ("auth.logout", "success") in outcomes
        assert sum(1 for a, o in outcomes if a == "auth.login" and o == "denied") >= 6
        assert any("locked" in e["detail"] for e in log)
    finally:
        srv.stop()


def totp(secret_b32: str, t: float, step: int = 30) -> str:
    """RFC 6238 with HMAC-SHA1, 6 digits: an independent implementation for the test."""
    import base64
    import hashlib
    import hmac
    import struct as st
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    mac = hmac.new(key, st.pack(">Q", int(t // step)), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    return f"{(st.unpack('>I', mac[off:off + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


def test_totp_enrolment_login_replay_and_recovery(tmp_path):
    import time
    srv = Server(tmp_path / "srv")
    srv.start()
    try:
        base = f"http://127.0.0.1:{srv.http_port}/api/v1"
        assert bootstrap(srv, "default", "rad", PASSWORD, tmp_path).returncode == 0

        def login(code=None):
            body = {"tenant": "default", "user": "rad", "password": PASSWORD}
            if code is not None:
                body["code"] = code
            return requests.post(f"{base}/auth/login", json=body)

        r = login()
        jar = {"radris_session": r.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]}
        # a token (not a person) cannot enrol
        tok = srv.session(scope="read,write")
        assert tok.post(f"{base}/auth/totp/enrol").status_code == 403
        e = requests.post(f"{base}/auth/totp/enrol", cookies=jar).json()
        assert e["uri"].startswith("otpauth://totp/RADRIS:rad?secret=")
        now = time.time()
        assert requests.post(f"{base}/auth/totp/confirm", cookies=jar,
                             json={"code": "123456" if totp(e["secret"], now) != "123456" else "654321"}
                             ).status_code == 400
        r = requests.post(f"{base}/auth/totp/confirm", cookies=jar,
                          json={"code": totp(e["secret"], now)})
        assert r.status_code == 200, r.text
        recovery = r.json()["recovery_codes"]
        assert len(recovery) == 10
        # the password alone is no longer enough
        r = login()
        assert r.status_code == 401 and "second factor" in r.json()["detail"]
        # the enrolment code is a replay now; the next step's code works once
        assert login(totp(e["secret"], now)).status_code == 401
        nxt = totp(e["secret"], now + 30)
        assert login(nxt).status_code == 200
        assert login(nxt).status_code == 401, "TOTP replay must be refused"
        # a recovery code works once
        assert login(recovery[0]).status_code == 200
        assert login(recovery[0]).status_code == 401
        # the seed is not in the database in clear
        import sqlite3
        db = sqlite3.connect(srv.data_dir / "index.sqlite")
        sealed = db.execute("SELECT totp_sealed FROM users WHERE user_name = 'rad'").fetchone()[0]
        assert sealed.startswith("v1:") and e["secret"] not in sealed
        admin = srv.session(scope="admin")
        log = admin.get(f"{base}/audit", params={"action": "auth.login", "limit": 100}).json()
        assert any("replayed" in x["detail"] for x in log)
    finally:
        srv.stop()


def test_audit_verify_catches_a_row_edited_in_the_database(tmp_path):
    import sqlite3
    srv = Server(tmp_path / "srv")
    srv.start()
    s = srv.session()
    for pid in ("A1", "B2", "C3"):
        s.get(f"{srv.dicomweb}/studies", params={"PatientID": pid})
    srv.stop()  # flushes the log and signs a checkpoint
    ok = run_radris("audit", "verify", "--data-dir", srv.data_dir, "--config", srv.config_path)
    assert ok.returncode == 0 and "signed checkpoints" in ok.stdout, ok.stdout + ok.stderr
    db = sqlite3.connect(srv.data_dir / "index.sqlite")
    seq = db.execute("SELECT seq FROM audit_log WHERE detail LIKE '%PatientID=B2%'").fetchone()[0]
    db.execute("UPDATE audit_log SET detail = replace(detail, 'B2', 'Z9') WHERE seq = ?", (seq,))
    db.commit()
    bad = run_radris("audit", "verify", "--data-dir", srv.data_dir, "--config", srv.config_path)
    assert bad.returncode == 1 and f"BROKEN at record {seq}" in bad.stdout, bad.stdout
    # cutting the newest records off is caught by the signed checkpoint
    db.execute("UPDATE audit_log SET detail = replace(detail, 'Z9', 'B2') WHERE seq = ?", (seq,))
    last = db.execute("SELECT MAX(seq) FROM audit_log").fetchone()[0]
    db.execute("DELETE FROM audit_log WHERE seq = ?", (last,))
    db.commit()
    cut = run_radris("audit", "verify", "--data-dir", srv.data_dir, "--config", srv.config_path)
    assert cut.returncode == 1 and "cut short" in cut.stdout, cut.stdout


def test_sign_in_attempts_are_rate_limited_per_address(tmp_path):
    srv = Server(tmp_path / "srv")
    srv.start()
    try:
        base = f"http://127.0.0.1:{srv.http_port}/api/v1"
        codes = [requests.post(f"{base}/auth/login",
                               json={"tenant": "default", "user": f"u{i}", "password": "x" * 12}
                               ).status_code for i in range(12)]
        assert codes[:10] == [401] * 10 and codes[10:] == [429, 429], codes
        r = requests.post(f"{base}/auth/login", json={"tenant": "default", "user": "u", "password": "p"})
        assert r.headers.get("Retry-After") == "60"
        assert r.headers["Content-Type"] == "application/problem+json"
    finally:
        srv.stop()
