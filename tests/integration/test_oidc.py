"""Sign-in through an external OpenID Connect provider (`[oidc]`), end to end against the mock
provider of mock_idp.py: login → provider → callback → session cookie; the account made on
first sign-in with the mapped tenant and roles; and bad input (replayed state, another
browser, forged or mis-addressed ID tokens, `alg: none`, HS256, a refused sign-in, a name
taken by a local account) answered with 400/401 problem documents and audited."""
from __future__ import annotations

import base64
import json
import time

import pytest
import requests

from conftest import Server, run_radris
from mock_idp import MockIdp, b64url, rsa_key

CALLBACK = "/api/v1/auth/oidc/callback"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("oidc")
    with MockIdp() as idp:
        srv = Server(tmp / "srv")
        secret = tmp / "client-secret"
        secret.write_text(idp.client_secret + "\n")
        with open(srv.config_path, "a") as f:
            f.write(f"""
[oidc]
issuer = "{idp.issuer}"
client_id = "{idp.client_id}"
client_secret_file = "{secret}"
redirect_url = "http://127.0.0.1:{srv.http_port}{CALLBACK}"
tenant = "other"
roles_claim = "realm_access.roles"
default_roles = ["referring"]
allow_insecure_http = true
""")
        srv.start()
        try:
            # a local account of the tenant, made before anyone signs in through the provider
            pw = tmp / "pw"
            pw.write_text("moonlit ferry over quiet harbour\n")
            cp = run_radris("admin", "bootstrap", "--data-dir", srv.data_dir, "--config",
                            srv.config_path, "--tenant", "other", "--user", "root",
                            "--password-file", pw, env=srv.env)
            assert cp.returncode == 0, cp.stderr
            yield srv, idp, f"http://127.0.0.1:{srv.http_port}"
        finally:
            srv.stop()


def cookie_of(resp: requests.Response, name: str) -> str | None:
    for c in resp.raw.headers.getlist("Set-Cookie"):
        k, _, rest = c.partition("=")
        if k == name:
            return rest.split(";")[0]
    return None


def start(base: str, idp: MockIdp) -> tuple[str, str]:
    """Login → provider; returns the callback URL the provider sent back and the binding."""
    r = requests.get(f"{base}/api/v1/auth/oidc/login", allow_redirects=False)
    assert r.status_code == 303, r.text
    binding = cookie_of(r, "radris_oidc")
    assert binding
    set_cookie = r.headers["Set-Cookie"]
    for flag in ("HttpOnly", "Secure", "SameSite=Lax", "Path=/api/v1/auth/oidc"):
        assert flag in set_cookie
    location = r.headers["Location"]
    assert location.startswith(f"{idp.issuer}/authorize?")
    r = requests.get(location, allow_redirects=False)
    assert r.status_code == 302, r.text
    assert r.headers["Location"].startswith(f"{base}{CALLBACK}?")
    return r.headers["Location"], binding


def callback(url: str, binding: str | None) -> requests.Response:
    # requests keeps Secure cookies off plain http: send them by hand
    headers = {"Cookie": f"radris_oidc={binding}"} if binding else {}
    return requests.get(url, headers=headers, allow_redirects=False)


def sign_in(base: str, idp: MockIdp) -> requests.Response:
    url, binding = start(base, idp)
    return callback(url, binding)


def refused(r: requests.Response, status: int):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status
    # nothing of a token, key or the provider's error text comes back
    assert "eyJ" not in r.text and "cookie" not in body["detail"].lower()
    assert cookie_of(r, "radris_session") is None


def whoami(base: str, session: str) -> requests.Response:
    return requests.get(f"{base}/api/v1/whoami", cookies={"radris_session": session})


def test_sign_in_makes_account_and_session(env):
    srv, idp, base = env
    idp.reset()
    idp.next_claims = {"sub": "u-1", "preferred_username": "alice",
                       "realm_access": {"roles": ["radiologist", "offline_access"]}}
    r = sign_in(base, idp)
    assert r.status_code == 303, r.text
    assert r.headers["Location"] == "/"
    session = cookie_of(r, "radris_session")
    assert session and session.startswith("rds_")
    set_cookies = r.raw.headers.getlist("Set-Cookie")
    (sc,) = [c for c in set_cookies if c.startswith("radris_session=")]
    for flag in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
        assert flag in sc
    # the binding cookie is spent
    assert any(c.startswith("radris_oidc=;") and "Max-Age=0" in c for c in set_cookies)
    who = whoami(base, session)
    assert who.status_code == 200, who.text
    assert who.json()["tenant"] == "other" and who.json()["user"] == "alice"
    assert sorted(who.json()["scopes"]) == ["read", "write"]
    assert requests.get(f"{base}/dicom-web/studies",
                        cookies={"radris_session": session}).status_code in (200, 204)
    # no admin rights
    assert requests.get(f"{base}/api/v1/audit",
                        cookies={"radris_session": session}).status_code == 403
    # the provider is the source of roles: promoted there, promoted here at the next sign-in
    idp.next_claims["realm_access"] = {"roles": ["admin"]}
    r = sign_in(base, idp)
    assert r.status_code == 303, r.text
    who = whoami(base, cookie_of(r, "radris_session"))
    assert "admin" in who.json()["scopes"]
    # a person with no RADRIS role gets the default roles; no name claim: the subject
    idp.next_claims = {"sub": "u-2"}
    r = sign_in(base, idp)
    assert r.status_code == 303, r.text
    who = whoami(base, cookie_of(r, "radris_session")).json()
    # (the default role, referring, reads and places orders; Cedar keeps it off study writes)
    assert who["user"] == "u-2" and sorted(who["scopes"]) == ["read", "write"]
    # logout ends the session like a password one
    assert requests.post(f"{base}/api/v1/auth/logout",
                         cookies={"radris_session": session}).status_code == 204
    assert whoami(base, session).status_code == 401


def test_replayed_foreign_and_unknown_state(env):
    srv, idp, base = env
    idp.reset()
    url, binding = start(base, idp)
    assert callback(url, binding).status_code == 303
    # the same callback again: the state is spent
    refused(callback(url, binding), 400)
    # a callback started in another browser (no binding cookie, or another one)
    url, _ = start(base, idp)
    refused(callback(url, None), 400)
    url, _ = start(base, idp)
    refused(callback(url, "someone-elses-binding"), 400)
    # made-up and missing state, malformed query
    refused(callback(f"{base}{CALLBACK}?code=x&state=made-up", binding), 400)
    refused(callback(f"{base}{CALLBACK}?code=x", binding), 400)
    refused(requests.get(f"{base}{CALLBACK}"), 400)


def expect_401(base: str, idp: MockIdp):
    refused(sign_in(base, idp), 401)


def test_forged_and_misaddressed_tokens(env):
    srv, idp, base = env
    idp.reset()
    # signed by a key the provider does not publish, under its kid: bad signature
    idp.sign_key = rsa_key("k1")
    expect_401(base, idp)
    # under an unknown kid: the JWKS is fetched again, still unknown
    idp.sign_key = rsa_key("k-unknown")
    before = idp.jwks_fetches
    expect_401(base, idp)
    assert idp.jwks_fetches > before
    idp.reset()
    for override in ({"aud": "another-client"}, {"iss": "http://evil.example.org"},
                     {"exp": int(time.time()) - 3600}, {"nonce": "not-the-nonce"},
                     {"nonce": None}, {"iat": int(time.time()) + 3600},
                     {"aud": ["radris", "other"]}, {"azp": "other"}):
        idp.overrides = override
        expect_401(base, idp)
    idp.reset()
    # alg none, and HS256 keyed by the client secret (not allowed by this configuration)
    now = int(time.time())
    claims = {"iss": idp.issuer, "aud": idp.client_id, "sub": "u-1", "iat": now,
              "exp": now + 300, "nonce": "x"}
    idp.raw_token = (b64url(json.dumps({"alg": "none"}).encode()) + "."
                     + b64url(json.dumps(claims).encode()) + ".")
    expect_401(base, idp)
    from joserfc import jwt
    from joserfc.jwk import OctKey
    idp.raw_token = jwt.encode({"alg": "HS256"}, claims,
                               OctKey.import_key(idp.client_secret.encode()))
    expect_401(base, idp)
    idp.raw_token = "garbage"
    expect_401(base, idp)
    idp.reset()
    # a tampered payload under a good signature
    good = idp.id_token({"nonce": "n", "claims": {"sub": "u-1"}})
    h, p, s = good.split(".")
    payload = json.loads(base64.urlsafe_b64decode(p + "=="))
    payload["preferred_username"] = "root"
    idp.raw_token = ".".join([h, b64url(json.dumps(payload).encode()), s])
    expect_401(base, idp)
    idp.reset()
    # key rotation: a new key under a new kid is found by refetching the JWKS
    new = rsa_key("k2")
    idp.published = [idp.key, new]
    idp.sign_key = new
    r = sign_in(base, idp)
    assert r.status_code == 303, r.text
    idp.reset()


def test_provider_refusal_and_taken_names(env):
    srv, idp, base = env
    idp.reset()
    idp.authorize_error = "access_denied"
    expect_401(base, idp)
    idp.reset()
    # the local account of the tenant with the same name (made by the fixture) is never
    # taken over
    idp.next_claims = {"sub": "u-9", "preferred_username": "root",
                       "realm_access": {"roles": ["admin"]}}
    expect_401(base, idp)
    # nor the account of another subject of the provider that chose the same name
    idp.next_claims = {"sub": "u-other", "preferred_username": "alice"}
    expect_401(base, idp)
    # an account made by the provider has no usable password
    r = requests.post(f"{base}/api/v1/auth/login",
                      json={"tenant": "other", "user": "alice",
                            "password": "unused dummy password for timing"})
    assert r.status_code == 401
    idp.reset()


def test_not_configured(tmp_path):
    srv = Server(tmp_path / "plain")
    srv.start()
    try:
        base = f"http://127.0.0.1:{srv.http_port}"
        for path in ("/api/v1/auth/oidc/login", f"{CALLBACK}?code=a&state=b"):
            r = requests.get(base + path, allow_redirects=False)
            assert r.status_code == 404 and r.headers["Content-Type"] == "application/problem+json"
    finally:
        srv.stop()


def test_audit_records(env):
    srv, idp, base = env
    admin = srv.session(tenant="other", scope="admin")
    # the audit writer commits in batches: wait for the last failure to land
    for _ in range(50):
        log = admin.get(f"{base}/api/v1/audit",
                        params={"action": "auth.oidc", "limit": 500}).json()
        if any("local account" in e["detail"] for e in log):
            break
        time.sleep(0.1)
    assert log, "no auth.oidc records"
    outcomes = {(e["action"], e["outcome"]) for e in log}
    assert ("auth.oidc.login", "success") in outcomes
    assert ("auth.oidc.login", "denied") in outcomes
    details = " | ".join(e["detail"] for e in log)
    for why in ("state", "another browser", "wrong audience", "bad signature",
                "nonce", "unreadable header", "not accepted", "refused", "local account"):
        assert why in details, why
    assert any(e["actor"] == "user:alice" and e["outcome"] == "success" for e in log)
    # nothing of a token or secret in the log
    assert "eyJ" not in details and idp.client_secret not in details


def test_sign_in_methods_say_whether_single_sign_on_is_offered(env, server):
    _, _, base = env
    r = requests.get(f"{base}/api/v1/auth/methods", timeout=10)
    assert r.status_code == 200
    assert r.json() == {"password": True, "oidc": True, "oidc_tenant": "other"}
    # a server without [oidc]: the sign-in form must not offer a link that cannot work
    r = requests.get(f"http://127.0.0.1:{server.http_port}/api/v1/auth/methods", timeout=10)
    assert r.json() == {"password": True, "oidc": False}
    assert requests.get(f"http://127.0.0.1:{server.http_port}/api/v1/auth/oidc/login",
                        timeout=10, allow_redirects=False).status_code == 404
