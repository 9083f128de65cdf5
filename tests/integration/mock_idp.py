"""A small OpenID Connect provider for the OIDC sign-in tests: discovery document, JWKS,
an `/authorize` that signs the configured person in at once and redirects back with a code,
and a `/token` that checks the code, the PKCE verifier and the client credentials (Basic or
form) before it hands out an ID token signed with an RSA key.

Tests change `next_claims`, `sign_key`, `header_extra` or `published` to make the provider
misbehave (another key, another audience, an old token…)."""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from joserfc import jwt
from joserfc.jwk import RSAKey


def rsa_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class MockIdp:
    def __init__(self, client_id: str = "radris", client_secret: str = "s3cret/with+odd chars"):
        self.client_id = client_id
        self.client_secret = client_secret
        self.key = rsa_key("k1")
        self.published = [self.key]      # keys in the JWKS
        self.sign_key = self.key         # key that signs ID tokens
        self.header_extra: dict = {}     # e.g. {"kid": "other"}
        self.raw_token: str | None = None  # send this instead of a signed token
        self.next_claims: dict = {"sub": "u-1", "preferred_username": "alice"}
        self.overrides: dict = {}        # claims forced onto the next token (None removes)
        self.authorize_error: str | None = None
        self.codes: dict[str, dict] = {}
        self.token_failures: list[str] = []
        self.jwks_fetches = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}/realms/test"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def reset(self):
        self.published = [self.key]
        self.sign_key = self.key
        self.header_extra = {}
        self.raw_token = None
        self.overrides = {}
        self.authorize_error = None
        self.next_claims = {"sub": "u-1", "preferred_username": "alice"}

    def discovery(self) -> dict:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
        }

    def id_token(self, grant: dict) -> str:
        if self.raw_token is not None:
            return self.raw_token
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.client_id, "iat": now, "exp": now + 300,
                  "nonce": grant["nonce"], "auth_time": now, **grant["claims"]}
        for k, v in self.overrides.items():
            if v is None:
                claims.pop(k, None)
            else:
                claims[k] = v
        header = {"alg": "RS256", "kid": self.sign_key.kid, **self.header_extra}
        return jwt.encode(header, claims, self.sign_key)

    def _handler(self):
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _json(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                path = url.path.removeprefix("/realms/test")
                q = dict(urllib.parse.parse_qsl(url.query))
                if path == "/.well-known/openid-configuration":
                    return self._json(200, idp.discovery())
                if path == "/jwks":
                    idp.jwks_fetches += 1
                    return self._json(200, {"keys": [k.as_dict(private=False)
                                                     for k in idp.published]})
                if path == "/authorize":
                    redirect = q.get("redirect_uri", "")
                    ok = (q.get("response_type") == "code" and q.get("client_id") == idp.client_id
                          and q.get("code_challenge_method") == "S256"
                          and q.get("code_challenge") and q.get("nonce") and q.get("state")
                          and "openid" in q.get("scope", "").split())
                    if not ok:
                        return self._json(400, {"error": "invalid_request"})
                    back = {"state": q["state"], "iss": idp.issuer}
                    if idp.authorize_error:
                        back["error"] = idp.authorize_error
                    else:
                        code = secrets.token_urlsafe(16)
                        with idp.lock:
                            idp.codes[code] = {"challenge": q["code_challenge"],
                                               "nonce": q["nonce"], "redirect_uri": redirect,
                                               "claims": dict(idp.next_claims)}
                        back["code"] = code
                    self.send_response(302)
                    self.send_header("Location", f"{redirect}?{urllib.parse.urlencode(back)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self._json(404, {"error": "not_found"})

            def do_POST(self):
                path = urllib.parse.urlsplit(self.path).path.removeprefix("/realms/test")
                n = int(self.headers.get("Content-Length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(n).decode()))
                if path != "/token":
                    return self._json(404, {"error": "not_found"})

                def fail(status, error, why):
                    idp.token_failures.append(why)
                    return self._json(status, {"error": error,
                                               "error_description": "eyJ must not be echoed"})

                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    cid, _, sec = base64.b64decode(auth[6:]).decode().partition(":")
                    cid, sec = urllib.parse.unquote_plus(cid), urllib.parse.unquote_plus(sec)
                else:
                    cid, sec = form.get("client_id"), form.get("client_secret")
                if cid != idp.client_id or sec != idp.client_secret:
                    return fail(401, "invalid_client", "client credentials")
                if form.get("grant_type") != "authorization_code":
                    return fail(400, "unsupported_grant_type", "grant type")
                with idp.lock:
                    grant = idp.codes.pop(form.get("code", ""), None)
                if grant is None:
                    return fail(400, "invalid_grant", "unknown or used code")
                if form.get("redirect_uri") != grant["redirect_uri"]:
                    return fail(400, "invalid_grant", "redirect_uri")
                verifier = form.get("code_verifier", "")
                if b64url(hashlib.sha256(verifier.encode()).digest()) != grant["challenge"]:
                    return fail(400, "invalid_grant", "PKCE verifier")
                self._json(200, {"access_token": secrets.token_urlsafe(16),
                                 "token_type": "Bearer", "expires_in": 300,
                                 "id_token": idp.id_token(grant)})

        return Handler
