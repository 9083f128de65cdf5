//! The forwarder against a real TLS syslog receiver on `127.0.0.1:0`, with certificates made
//! by rcgen and audit records written by the real [`AuditLog`] into a SQLite index.

use std::net::SocketAddr;
use std::path::Path;

use radris_core::audit::{AuditRecord, AuditSink, Outcome};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::PrivatePkcs8KeyDer;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;
use crate::AuditLog;

/// A test certificate authority with a `localhost` server certificate and a client
/// certificate, all as PEM files in `dir`.
struct Pki {
    ca_file: PathBuf,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
    client: ClientIdentity,
}

fn pki(dir: &Path, name: &str) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        (cert, key)
    };
    let (server_cert, server_key) = leaf(vec!["localhost".into()]);
    let (client_cert, client_key) = leaf(vec!["radris.test".into()]);
    let ca_file = dir.join(format!("{name}-ca.pem"));
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    let client = ClientIdentity {
        cert_file: dir.join(format!("{name}-client.pem")),
        key_file: dir.join(format!("{name}-client.key")),
    };
    std::fs::write(&client.cert_file, client_cert.pem()).unwrap();
    std::fs::write(&client.key_file, client_key.serialize_pem()).unwrap();
    Pki {
        ca_file,
        server_chain: vec![server_cert.der().clone(), ca_cert.der().clone()],
        server_key: server_key.serialize_der(),
        client,
    }
}

/// What the receiver saw.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Frame(String),
    Closed,
}

/// A syslog-over-TLS receiver (RFC 5425 octet counting). It closes each connection after
/// `frames_per_connection` frames. With `client_ca`, clients must present a certificate
/// signed by it.
async fn repository(
    pki: &Pki,
    client_ca: Option<&Path>,
    frames_per_connection: usize,
) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certificates(ca, "client CA").unwrap() {
                roots.add(c).unwrap();
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(
            pki.server_chain.clone(),
            PrivatePkcs8KeyDer::from(pki.server_key.clone()).into(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    let _ = tx.send(Seen::Closed);
                    return;
                };
                let mut reader = BufReader::new(tls);
                for _ in 0..frames_per_connection {
                    let mut len = Vec::new();
                    match reader.read_until(b' ', &mut len).await {
                        Ok(n) if n > 0 => {}
                        _ => break,
                    }
                    let Some(len) = std::str::from_utf8(&len)
                        .ok()
                        .and_then(|l| l.trim_end().parse::<usize>().ok())
                    else {
                        break;
                    };
                    let mut msg = vec![0; len];
                    if reader.read_exact(&mut msg).await.is_err() {
                        break;
                    }
                    let _ = tx.send(Seen::Frame(String::from_utf8(msg).unwrap()));
                }
                let mut tls = reader.into_inner();
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
                let _ = tx.send(Seen::Closed);
            });
        }
    });
    (addr, rx)
}

async fn index(dir: &Path) -> radris_store::Index {
    let url = format!("sqlite://{}", dir.join("index.db").display());
    radris_store::Index::open(&url).await.unwrap()
}

fn record(i: usize, tenant: &str) -> AuditRecord {
    let actions = [
        "dimse.c-store",
        "http GET /dicom-web/studies",
        "auth.login",
        "http DELETE /api/v1/studies/{study_uid}",
    ];
    AuditRecord {
        tenant: tenant.into(),
        actor: format!("user:<&\"'>{i}"),
        action: actions[i % actions.len()].into(),
        outcome: if i % 3 == 2 {
            Outcome::Denied
        } else {
            Outcome::Success
        },
        resource: format!("study 1.2.3.{i}"),
        detail: format!("n={i}"),
        source: "127.0.0.1:4000".into(),
    }
}

fn origin() -> SyslogOrigin {
    SyslogOrigin::new("pacs.test", "radris", "RADRIS@pacs.test")
}

fn config(addr: SocketAddr, pki: &Pki, cursor: &Path) -> SyslogConfig {
    SyslogConfig::new(
        addr.to_string(),
        "localhost",
        &pki.ca_file,
        origin(),
        cursor,
    )
}

/// The messages the forwarder must have sent for records `after+1 ..`, in order.
async fn expected(pool: &AnyPool, after: i64, tenant: Option<&TenantId>) -> Vec<Seen> {
    records_after(pool, after, 10_000, tenant)
        .await
        .unwrap()
        .iter()
        .map(|r| Seen::Frame(syslog_message(r, &origin())))
        .collect()
}

async fn receive(rx: &mut mpsc::UnboundedReceiver<Seen>, n: usize) -> Vec<Seen> {
    let mut got = Vec::new();
    while got.len() < n {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(Seen::Closed)) => continue,
            Ok(Some(s)) => got.push(s),
            _ => panic!("received only {got:?}"),
        }
    }
    got
}

#[tokio::test]
async fn forwards_in_order_then_only_new_records_across_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path(), "a");
    // the receiver hangs up after 5 frames: the forwarder must notice and reconnect
    let (addr, mut rx) = repository(&pki, None, 5).await;
    let index = index(dir.path()).await;
    let pool = index.pool().clone();
    let log = AuditLog::start(pool.clone(), None).await.unwrap();
    for i in 0..5 {
        log.record(record(i, "alpha"));
    }
    log.flush().await;
    let cursor = dir.path().join("syslog.cursor");
    let mut cfg = config(addr, &pki, &cursor);
    cfg.batch_size = 2; // several batches on one connection
    let fwd = SyslogForwarder::new(pool.clone(), cfg.clone()).unwrap();
    assert_eq!(fwd.forward_once().await.unwrap(), 5);
    let first = expected(&pool, 0, None).await;
    assert_eq!(first.len(), 5);
    assert_eq!(receive(&mut rx, 5).await, first);
    assert_eq!(std::fs::read_to_string(&cursor).unwrap(), "5\n");
    // the receiver closes; nothing pending means nothing is sent
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap(),
        Some(Seen::Closed)
    );
    assert_eq!(fwd.forward_once().await.unwrap(), 0);

    for i in 5..8 {
        log.record(record(i, "beta"));
    }
    log.flush().await;
    assert_eq!(fwd.forward_once().await.unwrap(), 3);
    let second = expected(&pool, 5, None).await;
    assert_eq!(receive(&mut rx, 3).await, second);
    assert!(matches!(&second[0], Seen::Frame(m) if m.contains(r#"ParticipantObjectID="6""#)));
    assert_eq!(fwd.position().await.unwrap(), 8);
    fwd.close().await;

    // a new forwarder resumes from the cursor file
    let again = SyslogForwarder::new(pool.clone(), cfg).unwrap();
    assert_eq!(again.position().await.unwrap(), 8);
    assert_eq!(again.forward_once().await.unwrap(), 0);
    assert!(matches!(rx.try_recv(), Err(_) | Ok(Seen::Closed)));
}

#[tokio::test]
async fn untrusted_or_misnamed_repository_is_refused_and_the_cursor_stays() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = pki(dir.path(), "trusted");
    let other = pki(dir.path(), "other");
    let (addr, mut rx) = repository(&other, None, usize::MAX).await;
    let index = index(dir.path()).await;
    let pool = index.pool().clone();
    let log = AuditLog::start(pool.clone(), None).await.unwrap();
    log.record(record(0, "alpha"));
    log.flush().await;
    let cursor = dir.path().join("untrusted.cursor");
    let fwd = SyslogForwarder::new(pool.clone(), config(addr, &trusted, &cursor)).unwrap();
    let err = fwd.forward_once().await.unwrap_err();
    assert!(err.is_tls(), "{err:?}");
    assert!(
        matches!(
            &err,
            ExportError::Tls {
                source: rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with(&format!(
            "TLS handshake with the audit repository {addr} failed"
        )),
        "{err}"
    );
    assert_eq!(fwd.position().await.unwrap(), 0);
    assert!(!cursor.exists());
    // a retry fails the same way and still sends nothing
    assert!(fwd.forward_once().await.unwrap_err().is_tls());

    // the right CA, but a certificate for another name
    let mut cfg = config(addr, &other, &cursor);
    cfg.server_name = "audit.example".into();
    let err = SyslogForwarder::new(pool.clone(), cfg)
        .unwrap()
        .forward_once()
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ExportError::Tls {
                source: rustls::Error::InvalidCertificate(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!cursor.exists());
    while let Ok(seen) = rx.try_recv() {
        assert_eq!(
            seen,
            Seen::Closed,
            "nothing may reach an untrusted repository"
        );
    }
}

#[tokio::test]
async fn mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path(), "m");
    let (addr, mut rx) = repository(&pki, Some(&pki.ca_file), usize::MAX).await;
    let index = index(dir.path()).await;
    let pool = index.pool().clone();
    let log = AuditLog::start(pool.clone(), None).await.unwrap();
    log.record(record(1, "alpha"));
    log.flush().await;

    // without a client certificate the repository refuses us after the handshake
    let anonymous = SyslogForwarder::new(
        pool.clone(),
        config(addr, &pki, &dir.path().join("anon.cursor")),
    )
    .unwrap();
    let err = anonymous.forward_once().await.unwrap_err();
    assert!(err.is_tls(), "{err:?}");
    assert_eq!(anonymous.position().await.unwrap(), 0);

    let mut cfg = config(addr, &pki, &dir.path().join("mtls.cursor"));
    cfg.client_identity = Some(pki.client.clone());
    let fwd = SyslogForwarder::new(pool.clone(), cfg).unwrap();
    assert_eq!(fwd.forward_once().await.unwrap(), 1);
    assert_eq!(receive(&mut rx, 1).await, expected(&pool, 0, None).await);
}

#[tokio::test]
async fn tenant_filter_spawned_task_and_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path(), "s");
    let (addr, mut rx) = repository(&pki, None, usize::MAX).await;
    let index = index(dir.path()).await;
    let pool = index.pool().clone();
    let log = AuditLog::start(pool.clone(), None).await.unwrap();
    for i in 0..6 {
        log.record(record(i, if i % 2 == 0 { "alpha" } else { "beta" }));
    }
    log.flush().await;
    let alpha = TenantId::parse("alpha").unwrap();
    let mut cfg = config(addr, &pki, &dir.path().join("alpha.cursor"));
    cfg.tenant = Some(alpha.clone());
    cfg.poll_interval = Duration::from_millis(20);
    let shutdown = CancellationToken::new();
    let task = SyslogForwarder::new(pool.clone(), cfg)
        .unwrap()
        .spawn(shutdown.clone());
    let want = expected(&pool, 0, Some(&alpha)).await;
    assert_eq!(want.len(), 3);
    assert_eq!(receive(&mut rx, 3).await, want);
    // records written while it runs are picked up by the poll
    log.record(record(6, "alpha"));
    log.flush().await;
    let more = expected(&pool, 5, Some(&alpha)).await;
    assert_eq!(receive(&mut rx, 1).await, more);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("alpha.cursor")).unwrap(),
        "7\n"
    );
}

#[tokio::test]
async fn unreachable_repository_and_bad_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path(), "u");
    let index = index(dir.path()).await;
    let pool = index.pool().clone();
    let log = AuditLog::start(pool.clone(), None).await.unwrap();
    log.record(record(0, "alpha"));
    log.flush().await;
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let cursor = dir.path().join("c");
    let fwd = SyslogForwarder::new(pool.clone(), config(port, &pki, &cursor)).unwrap();
    let err = fwd.forward_once().await.unwrap_err();
    assert!(matches!(err, ExportError::Connect { .. }), "{err:?}");
    assert!(err.is_transient() && !err.is_tls());
    assert!(!cursor.exists());

    let mut cfg = config(port, &pki, &cursor);
    cfg.ca_file = dir.path().join("missing.pem");
    assert!(matches!(
        SyslogForwarder::new(pool.clone(), cfg),
        Err(ExportError::Pem { .. })
    ));
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let mut cfg = config(port, &pki, &cursor);
    cfg.ca_file = empty;
    assert!(matches!(
        SyslogForwarder::new(pool.clone(), cfg),
        Err(ExportError::NoCertificate { .. })
    ));
    let mut cfg = config(port, &pki, &cursor);
    cfg.server_name = "not a name!".into();
    assert!(matches!(
        SyslogForwarder::new(pool.clone(), cfg),
        Err(ExportError::ServerName { .. })
    ));

    std::fs::write(&cursor, "garbage").unwrap();
    let fwd = SyslogForwarder::new(pool.clone(), config(port, &pki, &cursor)).unwrap();
    let err = fwd.forward_once().await.unwrap_err();
    assert!(matches!(err, ExportError::CursorCorrupt { .. }), "{err:?}");
    assert!(!err.is_transient());
}

#[test]
fn cursor_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cursor::new(dir.path().join("cursor"));
    assert_eq!(c.load().unwrap(), 0);
    c.store(41).unwrap();
    c.store(42).unwrap();
    assert_eq!(c.load().unwrap(), 42);
    assert_eq!(std::fs::read_to_string(c.path()).unwrap(), "42\n");
    std::fs::write(c.path(), "-3\n").unwrap();
    assert!(matches!(c.load(), Err(ExportError::CursorCorrupt { .. })));
}
