//! The browser application (`web/`, built by Vite into `web/dist`) served at `/`.
//!
//! * A GET that no route answers and that is not under `/api/`, `/dicom-web`, `/wado`,
//!   `/healthz`, `/readyz` or `/metrics` is the app's: a file of the build when there is one,
//!   else `index.html` (the app's own routes, such as `/viewer/<study>`). Under `/assets/`
//!   only files are served (a missing one is 404, never `index.html` under an
//!   immutable-cache header).
//! * `/assets/*` (content-hashed names) are cached for a year as immutable; everything else
//!   (`index.html` first) is `no-cache`, so a new build is picked up at once.
//! * Every app response carries the Content-Security-Policy ([`CSP`]), `nosniff` and
//!   `Referrer-Policy: no-referrer`.
//! * The files are public: they hold no patient data (the app signs in through
//!   `/api/v1/auth/login` and everything it shows comes through authenticated routes).
//! * Without a build, GET answers a short page that says how to build it.
//!
//! Where the build is: `http.web_dir` (`RADRIS_WEB_DIR`, `--web-dir`), else `web/dist` under
//! the current directory, else `<exe dir>/../../web/dist` (the binary in
//! `target/{debug,release}` of a checkout); each only when it holds an `index.html`.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use tower_http::services::{ServeDir, ServeFile};

use super::problem::ApiError;

/// The Content-Security-Policy of every app response: only our own origin; WebAssembly
/// (the image codecs) may be compiled, workers may come from blobs (the codecs' workers),
/// images from data and blob URLs (rendered frames), inline styles (the component library).
pub const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
    worker-src 'self' blob:; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; \
    connect-src 'self'; font-src 'self' data:; object-src 'none'; base-uri 'self'; \
    frame-ancestors 'none'";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Path prefixes that belong to the server, never to the app: unknown paths under them are
/// JSON 404 problems.
const SERVER_PATHS: &[&str] = &[
    "/api",
    "/dicom-web",
    "/wado",
    "/healthz",
    "/readyz",
    "/metrics",
];

const NOT_BUILT: &str = "<!doctype html>
<html lang=\"en\">
<head><meta charset=\"utf-8\"><title>RADRIS</title></head>
<body>
<h1>RADRIS</h1>
<p>The web application is not built.</p>
<p>Build it from the repository root with</p>
<pre>npm --prefix web ci &amp;&amp; npm --prefix web run build</pre>
<p>and restart the server (or point <code>[http] web_dir</code>, <code>RADRIS_WEB_DIR</code> or
<code>--web-dir</code> at a built <code>web/dist</code>).</p>
<p>The archive itself is running: the REST API is described at
<a href=\"/api/docs/\">/api/docs/</a>, DICOMweb is under <code>/dicom-web</code>.</p>
</body>
</html>
";

fn has_index(dir: &Path) -> bool {
    dir.join("index.html").is_file()
}

/// The folder to serve the app from (see the module documentation), or `None`.
pub fn resolve_web_dir(configured: Option<&Path>) -> Option<PathBuf> {
    let found = match configured {
        Some(dir) => {
            if !has_index(dir) {
                tracing::warn!(
                    web_dir = %dir.display(),
                    "http.web_dir holds no index.html: the web application is not served"
                );
                return None;
            }
            dir.to_owned()
        }
        None => {
            let here = PathBuf::from("web/dist");
            let beside_exe = std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|d| d.join("../../web/dist")));
            std::iter::once(here)
                .chain(beside_exe)
                .find(|d| has_index(d))?
        }
    };
    Some(std::fs::canonicalize(&found).unwrap_or(found))
}

/// Whether a path belongs to the server's own routes.
fn server_path(path: &str) -> bool {
    SERVER_PATHS.iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// The router's fallback: the app, or the JSON 404 for the server's own paths.
#[derive(Clone)]
pub struct WebApp {
    dir: Option<PathBuf>,
}

impl WebApp {
    pub fn new(dir: Option<PathBuf>) -> Self {
        WebApp { dir }
    }

    pub async fn serve(self, req: Request) -> Response {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        if server_path(&path) || (method != Method::GET && method != Method::HEAD) {
            return ApiError::not_found("no such resource").into_response();
        }
        let mut resp = match &self.dir {
            None => (StatusCode::OK, Html(NOT_BUILT)).into_response(),
            Some(dir) if path.starts_with("/assets/") => {
                let resp = files(ServeDir::new(dir).try_call(req).await);
                let ok = resp.status().is_success() || resp.status() == StatusCode::NOT_MODIFIED;
                with_cache(resp, if ok { IMMUTABLE } else { "no-store" })
            }
            Some(dir) => {
                let index = ServeFile::new(dir.join("index.html"));
                let resp = files(ServeDir::new(dir).fallback(index).try_call(req).await);
                with_cache(resp, "no-cache")
            }
        };
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        if !h.contains_key(header::CACHE_CONTROL) {
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        }
        resp
    }
}

fn with_cache(mut resp: Response, value: &'static str) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
    resp
}

/// A file response of `ServeDir`, its I/O failures as problems.
fn files<B>(result: std::io::Result<axum::http::Response<B>>) -> Response
where
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    match result {
        Ok(resp) => resp.map(Body::new),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            (StatusCode::NOT_FOUND, "not found").into_response()
        }
        Err(e) => ApiError::internal("serving the web application", e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_paths_are_not_the_apps() {
        for p in [
            "/api",
            "/api/",
            "/api/v1/nope",
            "/dicom-web",
            "/dicom-web/x",
            "/wado",
            "/healthz",
            "/readyz",
            "/metrics",
            "/metrics/x",
        ] {
            assert!(server_path(p), "{p}");
        }
        for p in [
            "/",
            "/viewer/1.2.3",
            "/apix",
            "/wadors",
            "/assets/app.js",
            "/api-docs",
        ] {
            assert!(!server_path(p), "{p}");
        }
    }

    #[test]
    fn the_configured_folder_needs_an_index() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(resolve_web_dir(Some(dir.path())), None);
        std::fs::write(dir.path().join("index.html"), "<!doctype html>").unwrap();
        assert_eq!(
            resolve_web_dir(Some(dir.path())),
            Some(std::fs::canonicalize(dir.path()).unwrap())
        );
    }
}
