"""The web application's static files at `/`: index.html for the app's own routes, long-lived
caching of the hashed assets, the security headers, WebAssembly's media type, the server's own
paths still answering JSON problems, and the page shown when the app is not built."""
from __future__ import annotations

import http.client

import pytest
import requests

from conftest import Server

CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; "
       "img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
       "font-src 'self' data:; object-src 'none'; base-uri 'self'; frame-ancestors 'none'")
INDEX = "<!doctype html><html><head><title>RADRIS test app</title></head><body>app-marker</body></html>"
JS = "console.log('radris app');\n" * 50
WASM = b"\x00asm\x01\x00\x00\x00" + bytes(200)


def web_dir(root):
    d = root / "dist"
    (d / "assets").mkdir(parents=True)
    (d / "index.html").write_text(INDEX)
    (d / "assets" / "app-abc.js").write_text(JS)
    (d / "assets" / "codec-1f2e.wasm").write_bytes(WASM)
    (d / "decoder.wasm").write_bytes(WASM)
    (d / "favicon.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    return d


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    root = tmp_path_factory.mktemp("webapp")
    dist = web_dir(root)
    # through the TOML file ([http] web_dir); the environment is tested below
    s = Server(root / "srv", extra_config=f"\n[http]\nweb_dir = \"{dist}\"\n")
    s.start()
    yield s
    s.stop()


def base(s: Server) -> str:
    return f"http://127.0.0.1:{s.http_port}"


def assert_app_headers(r: requests.Response):
    assert r.headers["Content-Security-Policy"] == CSP
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("path", ["/", "/index.html", "/viewer/1.2.3", "/viewer/1.2.3/series/4",
                                  "/studies?modality=CT", "/login"])
def test_app_routes_get_index_html(srv, path):
    r = requests.get(base(srv) + path)
    assert r.status_code == 200, r.text[:200]
    assert r.text == INDEX
    assert r.headers["Content-Type"].startswith("text/html")
    assert r.headers["Cache-Control"] == "no-cache"
    assert_app_headers(r)


def test_assets_are_immutable_and_wasm_is_wasm(srv):
    r = requests.get(base(srv) + "/assets/app-abc.js")
    assert r.status_code == 200 and r.text == JS
    assert "javascript" in r.headers["Content-Type"]
    assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert_app_headers(r)
    for path in ("/assets/codec-1f2e.wasm", "/decoder.wasm"):
        r = requests.get(base(srv) + path)
        assert r.status_code == 200 and r.content == WASM, path
        assert r.headers["Content-Type"] == "application/wasm", path
        assert_app_headers(r)
    assert requests.get(base(srv) + "/decoder.wasm").headers["Cache-Control"] == "no-cache"
    r = requests.get(base(srv) + "/favicon.svg")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("image/svg")
    # a missing asset is a 404, never index.html under an immutable cache header
    r = requests.get(base(srv) + "/assets/app-missing.js")
    assert r.status_code == 404 and "immutable" not in r.headers.get("Cache-Control", "")
    assert INDEX not in r.text
    # HEAD and conditional requests
    r = requests.head(base(srv) + "/assets/app-abc.js", headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200 and r.headers["Content-Length"] == str(len(JS))
    last = requests.get(base(srv) + "/assets/app-abc.js").headers["Last-Modified"]
    r = requests.get(base(srv) + "/assets/app-abc.js", headers={"If-Modified-Since": last})
    assert r.status_code == 304


def test_server_paths_keep_their_json_404(srv):
    for path in ("/api/v1/nope", "/api/nope", "/api", "/dicom-web/nope", "/wado/x",
                 "/metrics/x"):
        r = requests.get(base(srv) + path)
        assert r.status_code == 404, path
        assert r.headers["Content-Type"] == "application/problem+json", path
        assert r.json()["status"] == 404
    tok = srv.session()
    r = tok.get(base(srv) + "/api/v1/nope")
    assert r.status_code == 404 and r.headers["Content-Type"] == "application/problem+json"
    # the server's routes are unchanged
    assert requests.get(base(srv) + "/healthz").text == "ok"
    assert requests.get(base(srv) + "/api/openapi.json").json()["openapi"].startswith("3.1")
    assert requests.get(base(srv) + "/api/v1/studies").status_code == 401
    assert tok.get(base(srv) + "/api/v1/studies").status_code == 200
    # only GET and HEAD reach the app
    r = requests.post(base(srv) + "/viewer/1.2.3", data="x")
    assert r.status_code == 404 and r.headers["Content-Type"] == "application/problem+json"


def test_no_escape_from_the_web_dir(srv):
    for raw in ("/../../../../etc/passwd", "/assets/../../../../etc/passwd",
                "/assets/..%2f..%2f..%2f..%2fetc%2fpasswd", "/%2e%2e/%2e%2e/etc/passwd"):
        c = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=10)
        c.request("GET", raw)
        r = c.getresponse()
        body = r.read().decode(errors="replace")
        c.close()
        assert "root:" not in body, raw
        assert r.status in (200, 400, 404), (raw, r.status)
        if r.status == 200:
            assert body == INDEX, raw


def test_without_a_build_a_page_says_how_to_build_it(tmp_path):
    empty = tmp_path / "no-build"
    empty.mkdir()
    s = Server(tmp_path / "srv")
    s.env["RADRIS_WEB_DIR"] = str(empty)  # configured, but holds no index.html
    s.start()
    try:
        for path in ("/", "/viewer/1.2.3"):
            r = requests.get(f"http://127.0.0.1:{s.http_port}{path}")
            assert r.status_code == 200
            assert r.headers["Content-Type"].startswith("text/html")
            assert "not built" in r.text
            assert "npm --prefix web ci &amp;&amp; npm --prefix web run build" in r.text
            assert_app_headers(r)
        r = requests.get(f"http://127.0.0.1:{s.http_port}/api/v1/nope")
        assert r.status_code == 404 and r.headers["Content-Type"] == "application/problem+json"
    finally:
        s.stop()


def test_environment_points_at_a_build(tmp_path):
    dist = web_dir(tmp_path)
    s = Server(tmp_path / "srv")
    s.env["RADRIS_WEB_DIR"] = str(dist)
    s.start()
    try:
        r = requests.get(f"http://127.0.0.1:{s.http_port}/viewer/9.9")
        assert r.status_code == 200 and r.text == INDEX
        assert_app_headers(r)
    finally:
        s.stop()
