//! TLS for the HTTP and DICOM listeners (rustls on aws-lc-rs).
//!
//! * [`server_config`] loads the PEM certificate chain and key once; the same certificate
//!   serves HTTPS and DICOM TLS (PS3.15 Annex B). TLS 1.3 is preferred by rustls whenever the
//!   client offers it; 1.2 stays available for older modalities unless `min_version = "1.3"`.
//! * [`TlsListener`] is an axum [`Listener`]: TCP accepts on one task, each handshake on its
//!   own task under a deadline, so a client that stalls mid-handshake blocks nobody else.
//!
//! Invariant: no plaintext fallback. A listener configured for TLS never answers in clear.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::Listener;
use radris_core::config::TlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Install aws-lc-rs as the process's rustls provider (idempotent). Several crates in the tree
/// bring rustls; naming the provider once avoids "no process-level CryptoProvider" panics.
pub fn install_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading certificates from {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing PEM certificates in {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", path.display());
    Ok(certs)
}

/// A rustls server configuration from the `[tls]` section. `alpn`: protocols to offer
/// (`h2`, `http/1.1` for HTTP; none for DICOM). With `tls.client_ca_file`, `require_client`
/// makes clients present a certificate signed by one of those CAs.
pub fn server_config(
    tls: &TlsConfig,
    alpn: &[&[u8]],
    require_client: bool,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    install_provider();
    let cert_file = tls
        .cert_file
        .as_deref()
        .context("tls.cert_file is not set")?;
    let key_file = tls.key_file.as_deref().context("tls.key_file is not set")?;
    let chain = certificates(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .with_context(|| format!("reading the private key in {}", key_file.display()))?;
    let versions: &[&'static rustls::SupportedProtocolVersion] =
        if tls.min_version.as_deref() == Some("1.3") {
            &[&rustls::version::TLS13]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
    let builder = rustls::ServerConfig::builder_with_protocol_versions(versions);
    let builder = match (&tls.client_ca_file, require_client) {
        (Some(ca), true) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certificates(ca)? {
                roots
                    .add(c)
                    .with_context(|| format!("adding a client CA from {}", ca.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .context("building the client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .context("the TLS certificate and key do not form a usable pair")?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// HTTPS listener for `axum::serve`.
pub struct TlsListener {
    incoming: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
}

impl TlsListener {
    /// Start accepting on `listener`; handshakes complete in the background.
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, incoming) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = tx.closed() => break,
                };
                let (tcp, peer) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "HTTPS accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::warn!(error = %e, "could not set TCP_NODELAY on an HTTPS connection");
                }
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::info!(%peer, error = %e, "TLS handshake failed");
                            metrics::counter!("radris_http_tls_handshake_failures_total")
                                .increment(1);
                        }
                        Err(_) => {
                            tracing::info!(%peer, "TLS handshake timed out");
                            metrics::counter!("radris_http_tls_handshake_failures_total")
                                .increment(1);
                        }
                    }
                });
            }
        });
        Ok(TlsListener {
            incoming,
            local_addr,
        })
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(c) => c,
            // the accept task only ends once this receiver is gone
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}
