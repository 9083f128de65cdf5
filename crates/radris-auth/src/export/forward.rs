//! The syslog forwarder: every audit record, in `seq` order, to an IHE ATNA audit record
//! repository over one TLS connection (RFC 5425), resuming after a persisted cursor.
//!
//! **Delivery.** Records are read in batches after the cursor, framed, written and flushed;
//! only then does the cursor advance (in memory, then in the cursor file). A failure leaves
//! the cursor where it was, so the next attempt sends the same records again: nothing is
//! skipped, but a record can arrive twice (after a crash between the flush and the cursor
//! write, or when the connection broke mid-batch). A repository can drop duplicates by the
//! `radris-audit-hash` detail of each message. RFC 5425 has no acknowledgement: a flushed
//! write is in this host's socket buffer, not yet in the repository. To narrow that gap the
//! forwarder checks before each batch whether the repository closed the connection (and
//! then reconnects), and after each handshake waits briefly for a late refusal (with
//! TLS 1.3 a server rejects a client certificate only after the client finished).
//!
//! **Cursor.** A small text file holding the last forwarded `seq` in decimal
//! ([`Cursor`]); it is replaced atomically (write, fsync, rename, fsync of the directory). A
//! missing file means "nothing sent yet": the whole log goes out. To start from now, write
//! the current last `seq` into it. A file that does not hold a number stops the forwarder
//! with [`ExportError::CursorCorrupt`] rather than guessing. Each repository needs its own
//! cursor file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use radris_core::TenantId;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sqlx::{AnyPool, Row};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

use super::{ExportError, SyslogOrigin, octet_counted, syslog_message};
use crate::audit::StoredRecord;

/// Where and how to forward. Build it with [`SyslogConfig::new`] and adjust the fields.
#[derive(Debug, Clone)]
pub struct SyslogConfig {
    /// The repository, `host:port` (6514 is the registered syslog-over-TLS port).
    pub addr: String,
    /// The name the repository's certificate must carry (and the SNI sent).
    pub server_name: String,
    /// PEM bundle of the CAs that may sign the repository's certificate. Required: an audit
    /// trail is not sent to a party we cannot authenticate.
    pub ca_file: PathBuf,
    /// Our certificate and key, for repositories that require mutual TLS (IHE ATNA
    /// "secure node").
    pub client_identity: Option<ClientIdentity>,
    /// HOSTNAME, APP-NAME and AuditSourceID of every message.
    pub origin: SyslogOrigin,
    /// The cursor file (see the [module doc](self)).
    pub cursor_file: PathBuf,
    /// Forward only this tenant's records (for a per-tenant repository); `None`: all.
    pub tenant: Option<TenantId>,
    /// Records read, framed and written per round trip to the database.
    pub batch_size: usize,
    /// How often [`SyslogForwarder::spawn`] looks for new records.
    pub poll_interval: Duration,
    /// Limit for the TCP connect and, separately, the TLS handshake.
    pub connect_timeout: Duration,
    /// Limit for writing and flushing one batch.
    pub write_timeout: Duration,
    /// How long to wait after a handshake for the repository to refuse us.
    pub handshake_settle: Duration,
    /// The longest wait between retries after failures (the wait doubles from 1 s).
    pub max_backoff: Duration,
}

impl SyslogConfig {
    /// A configuration with the defaults: all tenants, batches of 256, a poll every second,
    /// 10 s to connect, 30 s to write a batch, 200 ms settle, backoff up to 60 s.
    pub fn new(
        addr: impl Into<String>,
        server_name: impl Into<String>,
        ca_file: impl Into<PathBuf>,
        origin: SyslogOrigin,
        cursor_file: impl Into<PathBuf>,
    ) -> Self {
        SyslogConfig {
            addr: addr.into(),
            server_name: server_name.into(),
            ca_file: ca_file.into(),
            client_identity: None,
            origin,
            cursor_file: cursor_file.into(),
            tenant: None,
            batch_size: 256,
            poll_interval: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            handshake_settle: Duration::from_millis(200),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// PEM files of a client certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The TLS client configuration of a forwarder: TLS 1.3 or 1.2 on aws-lc-rs, the
/// repository verified against `ca_file` only (no system roots), our certificate when
/// given.
pub fn tls_client_config(
    ca_file: &Path,
    identity: Option<&ClientIdentity>,
) -> Result<Arc<rustls::ClientConfig>, ExportError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(ca_file, "the CA bundle")? {
        roots.add(cert).map_err(|source| ExportError::TlsConfig {
            what: "adding a CA certificate",
            source,
        })?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .map_err(|source| ExportError::TlsConfig {
        what: "choosing protocol versions",
        source,
    })?
    .with_root_certificates(roots);
    let config = match identity {
        Some(id) => {
            let chain = certificates(&id.cert_file, "the client certificate")?;
            let key =
                PrivateKeyDer::from_pem_file(&id.key_file).map_err(|source| ExportError::Pem {
                    what: "the client private key",
                    path: id.key_file.clone(),
                    source,
                })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|source| ExportError::TlsConfig {
                    what: "the client certificate and key do not form a usable pair",
                    source,
                })?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, ExportError> {
    let pem = |source| ExportError::Pem {
        what,
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if certs.is_empty() {
        return Err(ExportError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Up to `limit` records with `seq > after`, oldest first; only `tenant`'s when given.
/// Reads across tenants: for the operator's forwarder and exports, never for a request.
pub async fn records_after(
    pool: &AnyPool,
    after: i64,
    limit: usize,
    tenant: Option<&TenantId>,
) -> Result<Vec<StoredRecord>, ExportError> {
    const COLUMNS: &str = "SELECT seq, at, tenant_id, actor, action, outcome, resource, detail, \
                           source, prev_hash, hash FROM audit_log";
    let limit = i64::try_from(limit.clamp(1, 10_000)).unwrap_or(10_000);
    let rows = match tenant {
        Some(t) => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "{COLUMNS} WHERE seq > $1 AND tenant_id = $2 ORDER BY seq LIMIT $3"
            )))
            .bind(after)
            .bind(t.as_str().to_owned())
            .bind(limit)
            .fetch_all(pool)
            .await
        }
        None => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "{COLUMNS} WHERE seq > $1 ORDER BY seq LIMIT $2"
            )))
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await
        }
    }
    .map_err(ExportError::db("reading audit records to export"))?;
    rows.iter()
        .map(|row| {
            let err = ExportError::db("reading audit records to export");
            let s = |i| row.try_get::<String, _>(i);
            let n = |i| row.try_get::<i64, _>(i);
            (|| {
                Ok(StoredRecord {
                    seq: n(0)?,
                    at: n(1)?,
                    tenant: s(2)?,
                    actor: s(3)?,
                    action: s(4)?,
                    outcome: s(5)?,
                    resource: s(6)?,
                    detail: s(7)?,
                    source: s(8)?,
                    prev_hash: s(9)?,
                    hash: s(10)?,
                })
            })()
            .map_err(err)
        })
        .collect()
}

/// The persisted position of a forwarder: the last `seq` it delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    path: PathBuf,
}

impl Cursor {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Cursor { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last delivered `seq`; 0 when the file does not exist yet.
    pub fn load(&self) -> Result<i64, ExportError> {
        let content = match std::fs::read_to_string(&self.path) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(source) => {
                return Err(ExportError::Cursor {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        content
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|seq| *seq >= 0)
            .ok_or_else(|| ExportError::CursorCorrupt {
                path: self.path.clone(),
                content: content.chars().take(40).collect(),
            })
    }

    /// Replace the file atomically with `seq`: a crash leaves the old or the new value.
    pub fn store(&self, seq: i64) -> Result<(), ExportError> {
        use std::io::Write;
        let err = |source| ExportError::Cursor {
            path: self.path.clone(),
            source,
        };
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            let mut f = std::fs::File::create(&tmp).map_err(err)?;
            writeln!(f, "{seq}").map_err(err)?;
            f.sync_all().map_err(err)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(err)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // make the rename durable; not every platform lets a directory be opened
            if let Ok(d) = std::fs::File::open(dir) {
                d.sync_all().map_err(err)?;
            }
        }
        Ok(())
    }
}

/// Sends audit records to a syslog-over-TLS audit repository. See the [module doc](self).
pub struct SyslogForwarder {
    pool: AnyPool,
    config: SyslogConfig,
    connector: TlsConnector,
    server_name: ServerName<'static>,
    cursor: Cursor,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    conn: Option<TlsStream<TcpStream>>,
    /// The cursor as last stored, once read.
    position: Option<i64>,
}

impl SyslogForwarder {
    /// A forwarder reading `pool`'s audit log, with TLS from the configuration's files.
    /// Nothing is connected until the first [`forward_once`](Self::forward_once).
    pub fn new(pool: AnyPool, config: SyslogConfig) -> Result<Self, ExportError> {
        let tls = tls_client_config(&config.ca_file, config.client_identity.as_ref())?;
        Self::with_tls_config(pool, config, tls)
    }

    /// As [`new`](Self::new), with a TLS client configuration made elsewhere (the
    /// configuration's `ca_file` and `client_identity` are then not read).
    pub fn with_tls_config(
        pool: AnyPool,
        config: SyslogConfig,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Self, ExportError> {
        let server_name = ServerName::try_from(config.server_name.clone()).map_err(|_| {
            ExportError::ServerName {
                name: config.server_name.clone(),
            }
        })?;
        Ok(SyslogForwarder {
            pool,
            cursor: Cursor::new(config.cursor_file.clone()),
            config,
            connector: TlsConnector::from(tls),
            server_name,
            state: tokio::sync::Mutex::new(State::default()),
        })
    }

    /// The last `seq` delivered (from the cursor file on first use).
    pub async fn position(&self) -> Result<i64, ExportError> {
        let mut state = self.state.lock().await;
        self.load_position(&mut state).await
    }

    /// Send every record not yet delivered, in order, and return how many were sent. Stops
    /// at the first error; what was delivered before it stays delivered (the cursor is
    /// stored after every batch). No retries here: [`spawn`](Self::spawn) retries.
    pub async fn forward_once(&self) -> Result<usize, ExportError> {
        self.forward(None).await
    }

    /// Run until `shutdown` is cancelled: forward, then wait `poll_interval`; after a failure
    /// wait 1 s, 2 s, 4 s… up to `max_backoff`, reconnecting each time. On shutdown the batch
    /// in flight is finished (bounded by the timeouts) and the connection closed with a TLS
    /// close_notify.
    pub fn spawn(self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let first_backoff = Duration::from_secs(1);
            let mut backoff = first_backoff;
            while !shutdown.is_cancelled() {
                let wait = match self.forward(Some(&shutdown)).await {
                    Ok(sent) => {
                        if sent > 0 {
                            tracing::debug!(sent, repository = %self.config.addr, "audit records forwarded");
                        }
                        backoff = first_backoff;
                        self.config.poll_interval
                    }
                    Err(e) => {
                        metrics::counter!("radris_audit_forward_errors_total").increment(1);
                        tracing::warn!(error = %e, repository = %self.config.addr, retry_in_s = backoff.as_secs(), "audit forwarding failed");
                        let wait = backoff;
                        backoff = (backoff * 2).min(self.config.max_backoff.max(first_backoff));
                        wait
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
            self.close().await;
        })
    }

    /// Close the connection, if any, with a TLS close_notify.
    pub async fn close(&self) {
        let mut state = self.state.lock().await;
        if let Some(mut conn) = state.conn.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.shutdown()).await;
        }
    }

    async fn forward(&self, stop: Option<&CancellationToken>) -> Result<usize, ExportError> {
        let mut state = self.state.lock().await;
        let mut position = self.load_position(&mut state).await?;
        let mut sent = 0;
        loop {
            if stop.is_some_and(|s| s.is_cancelled()) {
                return Ok(sent);
            }
            let rows = records_after(
                &self.pool,
                position,
                self.config.batch_size,
                self.config.tenant.as_ref(),
            )
            .await?;
            let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
                return Ok(sent);
            };
            let (first, last) = (first.seq, last.seq);
            let mut frames = Vec::new();
            for r in &rows {
                frames.extend_from_slice(&octet_counted(&syslog_message(r, &self.config.origin)));
            }
            self.send(&mut state, &frames, first, last).await?;
            position = last;
            state.position = Some(last);
            sent += rows.len();
            metrics::counter!("radris_audit_forwarded_total").increment(rows.len() as u64);
            let cursor = self.cursor.clone();
            tokio::task::spawn_blocking(move || cursor.store(last))
                .await
                .map_err(|e| ExportError::Cursor {
                    path: self.cursor.path.clone(),
                    source: std::io::Error::other(e.to_string()),
                })??;
        }
    }

    async fn load_position(&self, state: &mut State) -> Result<i64, ExportError> {
        if let Some(p) = state.position {
            return Ok(p);
        }
        let cursor = self.cursor.clone();
        let p = tokio::task::spawn_blocking(move || cursor.load())
            .await
            .map_err(|e| ExportError::Cursor {
                path: self.cursor.path.clone(),
                source: std::io::Error::other(e.to_string()),
            })??;
        state.position = Some(p);
        Ok(p)
    }

    /// Write and flush one batch on the live connection, connecting first when there is
    /// none or the repository closed it. On failure the connection is dropped.
    async fn send(
        &self,
        state: &mut State,
        frames: &[u8],
        first: i64,
        last: i64,
    ) -> Result<(), ExportError> {
        let reusable = match state.conn.as_mut() {
            Some(conn) => still_open(conn, Duration::ZERO).await,
            None => false,
        };
        let conn = match state.conn.take() {
            Some(conn) if reusable => conn,
            _ => self.connect().await?,
        };
        let conn = state.conn.insert(conn);
        let addr = &self.config.addr;
        let write = async {
            conn.write_all(frames).await?;
            conn.flush().await
        };
        match tokio::time::timeout(self.config.write_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => {
                state.conn = None;
                Err(match rustls_error(source) {
                    Ok(source) => ExportError::Tls {
                        addr: addr.clone(),
                        source,
                    },
                    Err(source) => ExportError::Send {
                        addr: addr.clone(),
                        first,
                        last,
                        source,
                    },
                })
            }
            Err(_) => {
                state.conn = None;
                Err(ExportError::Timeout {
                    addr: addr.clone(),
                    what: "writing to",
                    seconds: self.config.write_timeout.as_secs(),
                })
            }
        }
    }

    async fn connect(&self) -> Result<TlsStream<TcpStream>, ExportError> {
        let addr = &self.config.addr;
        let limit = self.config.connect_timeout;
        let timeout = |what| ExportError::Timeout {
            addr: addr.clone(),
            what,
            seconds: limit.as_secs(),
        };
        let tcp = tokio::time::timeout(limit, TcpStream::connect(addr.as_str()))
            .await
            .map_err(|_| timeout("connecting to"))?
            .map_err(|source| ExportError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let handshake_failed = |e: std::io::Error| match rustls_error(e) {
            Ok(source) => ExportError::Tls {
                addr: addr.clone(),
                source,
            },
            Err(source) => ExportError::Handshake {
                addr: addr.clone(),
                source,
            },
        };
        let mut conn =
            tokio::time::timeout(limit, self.connector.connect(self.server_name.clone(), tcp))
                .await
                .map_err(|_| timeout("completing the TLS handshake with"))?
                .map_err(handshake_failed)?;
        // A TLS 1.3 server reports a refused client certificate only after our side of the
        // handshake is done; catch it here rather than losing the first batch to it.
        let mut probe = [0u8; 512];
        match tokio::time::timeout(self.config.handshake_settle, conn.read(&mut probe)).await {
            Ok(Ok(0)) => Err(handshake_failed(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the repository closed the connection right after the handshake",
            ))),
            Ok(Err(e)) => Err(handshake_failed(e)),
            // data from a syslog server is unexpected, but harmless; silence is the norm
            Ok(Ok(_)) | Err(_) => Ok(conn),
        }
    }
}

/// Whether the repository has not closed the connection (syslog servers never send data,
/// so a readable end of stream or an alert means it is gone). Waits at most `wait`.
async fn still_open(conn: &mut TlsStream<TcpStream>, wait: Duration) -> bool {
    let mut buf = [0u8; 512];
    match tokio::time::timeout(wait, conn.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => false,
        Ok(Ok(_)) | Err(_) => true,
    }
}

/// The rustls error inside an I/O error from tokio-rustls, if that is what it is.
fn rustls_error(e: std::io::Error) -> Result<rustls::Error, std::io::Error> {
    if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
        let kind = e.kind();
        match e
            .into_inner()
            .map(|inner| inner.downcast::<rustls::Error>())
        {
            Some(Ok(tls)) => Ok(*tls),
            Some(Err(other)) => Err(std::io::Error::new(kind, other)),
            None => Err(std::io::Error::from(kind)),
        }
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests;
