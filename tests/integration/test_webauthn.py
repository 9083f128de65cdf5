"""WebAuthn passkeys as a second factor, end to end with a software authenticator (P-256,
fmt "none", CBOR written here): registration, password + passkey sign-in, replayed, forged,
misdirected and cross-tenant assertions, the lockout, bad input (400/401, never 500) and the
audit records of it all."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import time

import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from requests.adapters import HTTPAdapter

from conftest import Server
from test_auth import bootstrap

PASSWORD = "moonlit ferry over quiet harbour"
EVE_PASSWORD = "lantern glow beyond the far dunes"


# -- encodings ------------------------------------------------------------------------------
def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unb64u(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def cbor(v) -> bytes:
    """Canonical CBOR for what an authenticator sends: ints, bytes, text, lists, maps."""
    def head(major: int, n: int) -> bytes:
        if n < 24:
            return bytes([major << 5 | n])
        for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
            if n < 1 << (8 * size):
                return bytes([major << 5 | info]) + n.to_bytes(size, "big")
        raise ValueError(n)
    if isinstance(v, bool):
        return b"\xf5" if v else b"\xf4"
    if isinstance(v, int):
        return head(0, v) if v >= 0 else head(1, -1 - v)
    if isinstance(v, bytes):
        return head(2, len(v)) + v
    if isinstance(v, str):
        return head(3, len(v.encode())) + v.encode()
    if isinstance(v, list):
        return head(4, len(v)) + b"".join(map(cbor, v))
    if isinstance(v, dict):
        return head(5, len(v)) + b"".join(cbor(k) + cbor(x) for k, x in v.items())
    raise TypeError(v)


UP, AT = 0x01, 0x40


class SoftAuthenticator:
    """One P-256 credential, as a security key would hold it."""

    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cred_id = os.urandom(32)
        self.count = 0

    def cose_key(self) -> bytes:
        n = self.key.public_key().public_numbers()
        return cbor({1: 2, 3: -7, -1: 1, -2: n.x.to_bytes(32, "big"), -3: n.y.to_bytes(32, "big")})

    def auth_data(self, rp_id: str, flags: int, count: int, attested: bool) -> bytes:
        d = hashlib.sha256(rp_id.encode()).digest() + bytes([flags]) + count.to_bytes(4, "big")
        if attested:
            d += bytes(16) + len(self.cred_id).to_bytes(2, "big") + self.cred_id + self.cose_key()
        return d

    @staticmethod
    def client_data(ty: str, challenge: str, origin: str) -> bytes:
        return json.dumps({"type": ty, "challenge": challenge, "origin": origin,
                           "crossOrigin": False}).encode()

    def create(self, options: dict, origin: str) -> dict:
        """navigator.credentials.create() → credential.toJSON()"""
        client = self.client_data("webauthn.create", options["challenge"], origin)
        att = cbor({"fmt": "none", "attStmt": {},
                    "authData": self.auth_data(options["rp"]["id"], UP | AT, 0, True)})
        return {"id": b64u(self.cred_id), "rawId": b64u(self.cred_id), "type": "public-key",
                "response": {"clientDataJSON": b64u(client), "attestationObject": b64u(att),
                             "transports": ["usb"]},
                "clientExtensionResults": {}, "authenticatorAttachment": "cross-platform"}

    def get(self, options: dict, origin: str, *, count: int | None = None,
            challenge: str | None = None, flags: int = UP, rp_id: str | None = None,
            cred_id: bytes | None = None) -> dict:
        """navigator.credentials.get() → credential.toJSON(); keyword arguments misbehave."""
        if count is None:
            self.count += 1
            count = self.count
        client = self.client_data("webauthn.get", challenge or options["challenge"], origin)
        ad = self.auth_data(rp_id or options["rpId"], flags, count, False)
        sig = self.key.sign(ad + hashlib.sha256(client).digest(), ec.ECDSA(hashes.SHA256()))
        cid = cred_id or self.cred_id
        return {"id": b64u(cid), "rawId": b64u(cid), "type": "public-key",
                "response": {"clientDataJSON": b64u(client), "authenticatorData": b64u(ad),
                             "signature": b64u(sig), "userHandle": None},
                "clientExtensionResults": {}}


# -- HTTP -----------------------------------------------------------------------------------
class _FromAddress(HTTPAdapter):
    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


_next_address = [1]


def client() -> requests.Session:
    """A client on its own loopback address: sign-in is limited to 10 attempts per address
    per minute, and this module makes more than that."""
    _next_address[0] += 1
    s = requests.Session()
    s.mount("http://", _FromAddress(f"127.0.0.{_next_address[0]}"))
    return s


def cookie_of(r: requests.Response) -> dict:
    # requests does not send Secure cookies over http: send it by hand
    return {"radris_session": r.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]}


def test_passkey_second_factor(tmp_path):
    srv = Server(tmp_path / "srv")
    origin = f"http://localhost:{srv.http_port}"
    with open(srv.config_path, "a") as f:
        f.write(f'\n[http]\nwebauthn_rp_id = "localhost"\nwebauthn_origin = "{origin}"\n')
    srv.start()
    try:
        base = f"http://127.0.0.1:{srv.http_port}/api/v1"
        assert bootstrap(srv, "default", "root", PASSWORD, tmp_path).returncode == 0
        assert bootstrap(srv, "other", "eve", EVE_PASSWORD, tmp_path).returncode == 0

        def login(tenant="default", user="root", password=PASSWORD, **extra):
            return client().post(f"{base}/auth/login", json={"tenant": tenant, "user": user,
                                                             "password": password, **extra})

        def finish(ticket, credential, **kw):
            return client().post(f"{base}/auth/webauthn/login/finish",
                                 json={"mfa_ticket": ticket, "credential": credential}, **kw)

        # -- registration, signed in with the password (no passkey yet)
        r = login()
        assert r.status_code == 200, r.text
        jar = cookie_of(r)
        opts = requests.post(f"{base}/auth/webauthn/register/start", cookies=jar)
        assert opts.status_code == 200, opts.text
        opts = opts.json()
        assert opts["rp"]["id"] == "localhost" and opts["attestation"] == "none"
        assert {"type": "public-key", "alg": -7} in opts["pubKeyCredParams"]
        assert len(unb64u(opts["challenge"])) == 32 and opts["user"]["id"] != b64u(b"root")
        assert opts["excludeCredentials"] == [] and opts["timeout"] == 300_000
        key = SoftAuthenticator()
        reg = key.create(opts, origin)
        r = requests.post(f"{base}/auth/webauthn/register/finish", cookies=jar,
                          json={"name": "desk key", "credential": reg})
        assert r.status_code == 201, r.text
        assert r.json()["credential_id"] == b64u(key.cred_id) and r.json()["name"] == "desk key"
        # the challenge was single use
        r = requests.post(f"{base}/auth/webauthn/register/finish", cookies=jar,
                          json={"credential": reg})
        assert r.status_code == 400 and "challenge" in r.json()["detail"], r.text
        # a registration signed for another origin, and one for another RP id
        for bad_origin, rp_id in ((f"http://localhost:{srv.http_port + 1}", "localhost"),
                                  (origin, "evil.example")):
            o = requests.post(f"{base}/auth/webauthn/register/start", cookies=jar).json()
            assert [c["id"] for c in o["excludeCredentials"]] == [b64u(key.cred_id)]
            o["rp"]["id"] = rp_id
            r = requests.post(f"{base}/auth/webauthn/register/finish", cookies=jar,
                              json={"credential": SoftAuthenticator().create(o, bad_origin)})
            assert r.status_code == 400, r.text
            assert r.headers["Content-Type"] == "application/problem+json"
        # garbage: 400, never 500
        for junk in ({"credential": {"id": "!!", "type": "public-key",
                                     "response": {"clientDataJSON": "", "attestationObject": ""}}},
                     {"credential": dict(reg, response={"clientDataJSON": b64u(b"{}"),
                                                        "attestationObject": b64u(b"\xa3" * 9)})},
                     {"nonsense": 1}):
            r = requests.post(f"{base}/auth/webauthn/register/finish", cookies=jar, json=junk)
            assert r.status_code in (400, 422), (junk, r.status_code, r.text)
        listed = requests.get(f"{base}/auth/webauthn/credentials", cookies=jar).json()
        assert [(p["credential_id"], p["name"], p["algorithm"]) for p in listed] == \
            [(b64u(key.cred_id), "desk key", -7)]
        # an API token is no person: it registers nothing
        token = srv.session(scope="read,write")
        assert token.post(f"{base}/auth/webauthn/register/start").status_code == 403
        assert token.get(f"{base}/auth/webauthn/credentials").json() == []

        # -- password alone is no longer enough
        r = login()
        assert r.status_code == 401 and "Set-Cookie" not in r.headers, r.text
        assert r.headers["Content-Type"] == "application/problem+json"
        challenge = r.json()
        assert "second factor" in challenge["detail"]
        assert challenge["mfa_ticket"].startswith("wmt_")
        req = challenge["webauthn"]
        assert req["rpId"] == "localhost" and req["timeout"] == 120_000
        assert req["allowCredentials"] == [{"type": "public-key", "id": b64u(key.cred_id)}]
        # a made-up code is not a second factor of a passkey-only account
        assert login(code="123456").status_code == 401
        # a wrong password yields no challenge
        r = login(password="not the password")
        assert r.status_code == 401 and "mfa_ticket" not in r.json()

        # -- the passkey finishes the sign-in with the same cookie as the password sign-in
        good = key.get(req, origin)
        r = finish(challenge["mfa_ticket"], good)
        assert r.status_code == 200, r.text
        for flag in ("HttpOnly", "Secure", "SameSite=Strict"):
            assert flag in r.headers["Set-Cookie"]
        assert r.json()["user"] == "root" and "admin" in r.json()["scopes"]
        who = requests.get(f"{base}/whoami", cookies=cookie_of(r))
        assert who.status_code == 200 and who.json() == {**who.json(), "user": "root",
                                                         "tenant": "default"}
        assert requests.get(f"{base}/auth/webauthn/credentials",
                            cookies=cookie_of(r)).json()[0]["sign_count"] == 1

        # -- replay of the same assertion (same ticket, same challenge): refused
        replay = finish(challenge["mfa_ticket"], good)
        assert replay.status_code == 401, replay.text
        generic = replay.json()["detail"]

        def refused(make, why):
            c = login().json()
            r = finish(c["mfa_ticket"], make(c["webauthn"]))
            assert r.status_code == 401, (why, r.status_code, r.text)
            assert r.json()["detail"] == generic, why  # the caller learns nothing more
            assert "Set-Cookie" not in r.headers
            return c

        def good_login():
            c = login().json()
            r = finish(c["mfa_ticket"], key.get(c["webauthn"], origin))
            assert r.status_code == 200, r.text

        # five failures lock the account (passkey failures count like wrong passwords), so
        # a good sign-in (which resets the count) separates the groups of four
        # the same assertion under a fresh ticket: wrong challenge
        refused(lambda o: good, "replayed assertion, new ticket")

        def forged(o):
            """a forged signature: the signed authenticator data changed afterwards"""
            a = key.get(o, origin)
            ad = bytearray(unb64u(a["response"]["authenticatorData"]))
            ad[-1] ^= 0xFF
            a["response"]["authenticatorData"] = b64u(bytes(ad))
            return a
        refused(forged, "forged signature")
        refused(lambda o: SoftAuthenticator().get(o, origin, cred_id=key.cred_id),
                "another key claiming the credential id")
        refused(lambda o: key.get(o, "https://evil.example"), "wrong origin")
        good_login()
        refused(lambda o: key.get(o, origin, rp_id="evil.example"), "wrong rpIdHash")
        refused(lambda o: key.get(o, origin, challenge=b64u(os.urandom(32))), "wrong challenge")
        refused(lambda o: key.get(o, origin, flags=0), "user not present")
        refused(lambda o: key.get(o, origin, count=1), "counter did not increase")
        good_login()
        # a ticket is spent by its first attempt, good or bad
        c = refused(lambda o: key.get(o, origin, count=1), "counter again")  # 1
        assert finish(c["mfa_ticket"], key.get(c["webauthn"], origin)).status_code == 401
        # bad input: a clear 400 or 401, never a 500
        c = login().json()
        bad = key.get(c["webauthn"], origin)
        bad["response"]["signature"] = "%%%"
        r = finish(c["mfa_ticket"], bad)
        assert r.status_code == 400 and r.headers["Content-Type"] == "application/problem+json"
        bad = key.get(c["webauthn"], origin)
        bad["response"]["authenticatorData"] = b64u(b"\x00" * 7)
        assert finish(c["mfa_ticket"], bad).status_code == 401  # 2
        assert finish("wmt_" + "0" * 64, good).status_code == 401
        assert finish("x", good).status_code == 401
        r = client().post(f"{base}/auth/webauthn/login/finish", data="{",
                          headers={"Content-Type": "application/json"})
        assert r.status_code == 400
        r = client().post(f"{base}/auth/webauthn/login/finish", json={"mfa_ticket": "x"})
        assert r.status_code in (400, 422)
        refused(forged, "forged again")  # 3
        refused(forged, "forged again")  # 4
        # a ticket handed out before the lock is worth nothing after it
        early = login().json()
        refused(forged, "forged again")  # 5: locked
        r = finish(early["mfa_ticket"], key.get(early["webauthn"], origin))
        assert r.status_code == 401 and r.json()["detail"] == generic
        # a lock is not a challenge
        r = login()
        assert r.status_code == 401 and "mfa_ticket" not in r.json(), r.text

        # -- another tenant's user cannot use the credential (and root's ticket not Eve's)
        r = client().post(f"{base}/auth/login", json={"tenant": "other", "user": "eve",
                                                      "password": EVE_PASSWORD})
        assert r.status_code == 200, r.text
        eve_jar = cookie_of(r)
        eve_key = SoftAuthenticator()
        o = requests.post(f"{base}/auth/webauthn/register/start", cookies=eve_jar).json()
        assert requests.post(f"{base}/auth/webauthn/register/finish", cookies=eve_jar,
                             json={"credential": eve_key.create(o, origin)}).status_code == 201
        # root's passkeys are not Eve's to see or delete
        assert requests.get(f"{base}/auth/webauthn/credentials", cookies=eve_jar).json()[0][
            "credential_id"] == b64u(eve_key.cred_id)
        r = requests.delete(f"{base}/auth/webauthn/credentials", cookies=eve_jar,
                            params={"credential_id": b64u(key.cred_id)})
        assert r.status_code == 404
        c = client().post(f"{base}/auth/login", json={"tenant": "other", "user": "eve",
                                                      "password": EVE_PASSWORD}).json()
        assert c["webauthn"]["allowCredentials"] == [{"type": "public-key",
                                                      "id": b64u(eve_key.cred_id)}]
        r = finish(c["mfa_ticket"], key.get(c["webauthn"], origin))
        assert r.status_code == 401, r.text
        # Eve's own passkey still works with her next ticket
        c = client().post(f"{base}/auth/login", json={"tenant": "other", "user": "eve",
                                                      "password": EVE_PASSWORD}).json()
        r = finish(c["mfa_ticket"], eve_key.get(c["webauthn"], origin))
        assert r.status_code == 200 and r.json()["tenant"] == "other", r.text
        eve_jar = cookie_of(r)
        # removing her passkey brings back the password-only sign-in
        assert requests.delete(f"{base}/auth/webauthn/credentials", cookies=eve_jar,
                               params={"credential_id": b64u(eve_key.cred_id)}).status_code == 204
        assert client().post(f"{base}/auth/login", json={"tenant": "other", "user": "eve",
                                                         "password": EVE_PASSWORD}).status_code == 200

        # -- the audit log has it all, with the reason of each refusal
        admin = srv.session(scope="admin")
        for _ in range(50):
            log = admin.get(f"{base}/audit", params={"action": "auth.webauthn",
                                                     "limit": 200}).json()
            if sum(1 for e in log if e["action"] == "auth.webauthn.login") >= 14:
                break
            time.sleep(0.1)
        seen = {(e["action"], e["outcome"]) for e in log}
        assert {("auth.webauthn.register", "success"), ("auth.webauthn.register", "denied"),
                ("auth.webauthn.login", "success"), ("auth.webauthn.login", "denied")} <= seen, seen
        details = " | ".join(e["detail"] for e in log if e["outcome"] == "denied")
        for why in ("signature does not verify", "origin", "rpIdHash", "challenge",
                    "user presence", "signature counter", "already used", "malformed",
                    "locked"):
            assert why in details, (why, details)
        assert all(e["actor"] == "user:root" for e in log), "the tenant's own log only"
        other = srv.session(tenant="other", scope="admin").get(
            f"{base}/audit", params={"action": "auth.webauthn", "limit": 200}).json()
        assert any(e["actor"] == "user:eve" and e["outcome"] == "success" for e in other)
        assert any(e["actor"] == "user:eve" and "not a passkey of this account" in e["detail"]
                   for e in other), other
        assert not any(e["actor"] == "user:root" for e in other)
    finally:
        srv.stop()
