//! `radris serve`: one function for `main` and tests. Decide (signal) → tell (the future
//! resolves) → wait (DIMSE associations in flight finish, HTTP drains).

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use radris_core::config::Config;
use radris_dimse::scp::{self, ScpContext};
use radris_store::Archive;

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Forward the audit log to the configured syslog repository (IHE ATNA), if any.
fn start_audit_forwarder(
    cfg: &Config,
    archive: &Archive,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    use radris_auth::export::{ClientIdentity, SyslogConfig, SyslogForwarder, SyslogOrigin};
    let c = &cfg.audit_syslog;
    c.validate()?;
    let (Some(addr), Some(ca)) = (&c.addr, &c.ca_file) else {
        return Ok(None);
    };
    let server_name = c.server_name.clone().unwrap_or_else(|| {
        addr.rsplit_once(':')
            .map(|(h, _)| h.trim_matches(['[', ']']).to_owned())
            .unwrap_or_else(|| addr.clone())
    });
    let hostname = c.hostname.clone().unwrap_or_else(|| "localhost".into());
    let origin = SyslogOrigin::new(
        hostname.clone(),
        "radris",
        format!("{}@{hostname}", cfg.ae_title),
    );
    let mut sc = SyslogConfig::new(
        addr.clone(),
        server_name,
        ca.clone(),
        origin,
        cfg.data_dir.join("audit-syslog.cursor"),
    );
    if let (Some(cert_file), Some(key_file)) = (&c.client_cert_file, &c.client_key_file) {
        sc.client_identity = Some(ClientIdentity {
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
        });
    }
    let forwarder = SyslogForwarder::new(archive.index().pool().clone(), sc)
        .context("configuring the audit syslog forwarder")?;
    tracing::info!(repository = %addr, "forwarding the audit log over syslog/TLS");
    Ok(Some(forwarder.spawn(stop)))
}

/// Run the archive until `shutdown` resolves.
pub async fn serve(
    cfg: Config,
    archive: Archive,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let directory = cfg.ae_directory()?;
    let signer = radris_auth::keys::audit_signing_key(&cfg.data_dir)?;
    let audit_log =
        radris_auth::AuditLog::start(archive.index().pool().clone(), Some(signer)).await?;
    let audit: radris_core::audit::Audit = Arc::new(audit_log.clone());
    if cfg.http.anonymous {
        tracing::warn!(
            "HTTP accepts requests without credentials (http.anonymous): for benchmarks and closed test networks only"
        );
    }
    let forwarder_stop = tokio_util::sync::CancellationToken::new();
    let forwarder = start_audit_forwarder(&cfg, &archive, forwarder_stop.clone())?;
    let metrics = crate::http::install_metrics()?;
    let listener = TcpListener::bind(cfg.dicom_listen)
        .with_context(|| format!("binding DICOM port {}", cfg.dicom_listen))?;
    let ris = radris_ris::Ris::new(
        archive.index().clone(),
        archive.events().clone(),
        audit.clone(),
    );
    let workflow_stop = tokio_util::sync::CancellationToken::new();
    let workflow_tasks = start_workflow_tasks(&ris, &archive, workflow_stop.clone());
    let ctx = Arc::new(
        ScpContext::new(
            archive.clone(),
            tokio::runtime::Handle::current(),
            directory,
            cfg.dimse.clone(),
        )
        .with_audit(audit.clone())
        .with_workflow(Arc::new(radris_ris::DimseBridge::new(
            ris.clone(),
            tokio::runtime::Handle::current(),
        ))),
    );
    let dimse = scp::start(listener, ctx.clone())?;
    let dimse_tls = match cfg.tls.dicom_listen {
        Some(addr) => {
            let config = crate::tls::server_config(&cfg.tls, &[], true)?;
            let listener = TcpListener::bind(addr)
                .with_context(|| format!("binding DICOM TLS port {addr}"))?;
            let server = scp::start_tls(listener, ctx.clone(), config)?;
            tracing::info!(dicom_tls = %server.local_addr(), "DICOM TLS listener open");
            Some(server)
        }
        None => None,
    };
    let http_tls = if cfg.tls.http {
        Some(crate::tls::server_config(
            &cfg.tls,
            &[b"h2", b"http/1.1"],
            false,
        )?)
    } else {
        None
    };
    let http_listener = tokio::net::TcpListener::bind(cfg.http_listen)
        .await
        .with_context(|| format!("binding HTTP port {}", cfg.http_listen))?;
    let ready = Arc::new(AtomicBool::new(true));
    tracing::info!(
        dicom = %dimse.local_addr(),
        http = %http_listener.local_addr()?,
        ae_title = %cfg.ae_title,
        index = %archive.index().describe(),
        data_dir = %cfg.data_dir.display(),
        open_ae = cfg.open_ae,
        "RADRIS is serving"
    );
    let tokens = Arc::new(radris_auth::Tokens::new(archive.index().pool().clone()));
    let keys = Arc::new(radris_auth::keys::MasterKey::load_or_create(&cfg.data_dir)?);
    let deid_key = crate::deid::key_from_master(keys.as_ref())?;
    let users = Arc::new(radris_auth::Users::new(
        archive.index().pool().clone(),
        keys,
    )?);
    let oidc = radris_auth::oidc::Oidc::new(&cfg.oidc)?;
    if let Some(o) = &oidc {
        tracing::info!(oidc = ?o, "sign-in through an OpenID Connect provider is on");
    }
    let policy = radris_auth::policy::PolicyEngine::load(archive.index().pool().clone()).await?;
    stamp_sites_of_remote_aes(&cfg, &archive);
    // the router serves the web application from the folder found here (None: a page that
    // says how to build it)
    let mut http_cfg = cfg.http.clone();
    http_cfg.web_dir = crate::http::webapp::resolve_web_dir(cfg.http.web_dir.as_deref());
    match &http_cfg.web_dir {
        Some(d) => tracing::info!(web_dir = %d.display(), "serving the web application at /"),
        None => tracing::info!(
            "the web application is not built (npm --prefix web ci && npm --prefix web run build)"
        ),
    }
    let reports = radris_report::service::Reports::new(
        archive.index().clone(),
        ris.clone(),
        audit.clone(),
        Arc::new(radris_auth::keys::report_signing_key(&cfg.data_dir)?),
    );
    let volumes = Arc::new(crate::render::Volumes::new(
        usize::try_from(http_cfg.volume_cache_mib << 20).unwrap_or(usize::MAX),
    ));
    let app = crate::http::router(crate::http::AppState {
        archive,
        metrics,
        ready: ready.clone(),
        dimse: ctx,
        tokens,
        users,
        login_limiter: Arc::default(),
        oidc: oidc.map(Arc::new),
        audit: audit.clone(),
        http: Arc::new(http_cfg),
        tls: http_tls.is_some(),
        deid_key: Arc::new(deid_key),
        policy,
        reports,
        ris,
        volumes,
    })
    .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let stopped = async move {
        let _ = rx.await;
    };
    let http = match http_tls {
        None => {
            // TCP_NODELAY on HTTP sockets too (small responses must not wait for delayed ACKs)
            let listener = axum::serve::ListenerExt::tap_io(http_listener, |tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::warn!(error = %e, "could not set TCP_NODELAY on an HTTP connection");
                }
            });
            tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stopped)
                    .await
            })
        }
        Some(config) => {
            // tap_io gives the connection's peer address to ConnectInfo (axum implements
            // that for tapped listeners); TCP_NODELAY is set before the handshake.
            let listener = axum::serve::ListenerExt::tap_io(
                crate::tls::TlsListener::new(http_listener, config)?,
                |_| {},
            );
            tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stopped)
                    .await
            })
        }
    };
    shutdown.await;
    tracing::info!("shutting down: finishing associations in flight");
    ready.store(false, Ordering::SeqCst);
    tokio::task::spawn_blocking(move || {
        if let Some(d) = dimse_tls {
            d.shutdown(Duration::from_secs(30));
        }
        dimse.shutdown(Duration::from_secs(30))
    })
    .await?;
    let _ = tx.send(());
    match tokio::time::timeout(Duration::from_secs(10), http).await {
        Ok(r) => r??,
        Err(_) => tracing::warn!("HTTP did not drain in 10 s"),
    }
    workflow_stop.cancel();
    for t in workflow_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    audit_log.flush().await;
    if let Some(f) = forwarder {
        // a last round sends what the flush just wrote
        tokio::time::sleep(Duration::from_millis(200)).await;
        forwarder_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), f).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Studies stored through a `[[remote_aes]]` entry with a `site` get that site (the first
/// site to store into a study owns it), for site-scoped authorisation policies. Runs off the
/// event bus, so the stamp follows the C-STORE response by milliseconds.
fn stamp_sites_of_remote_aes(cfg: &Config, archive: &Archive) {
    let sites: std::collections::HashMap<(String, String), String> = cfg
        .remote_aes
        .iter()
        .filter_map(|ae| {
            let site = ae.site.as_deref()?.trim();
            (!site.is_empty()).then(|| {
                (
                    (ae.tenant.clone(), ae.ae_title.trim().to_owned()),
                    site.to_owned(),
                )
            })
        })
        .collect();
    if sites.is_empty() {
        return;
    }
    let mut events = archive.events().subscribe();
    let index = archive.index().clone();
    tokio::spawn(async move {
        let mut last: Option<(String, String)> = None;
        loop {
            let event = match events.recv().await {
                Ok(e) => e,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "site stamping lagged behind ingest");
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            let radris_core::events::Event::InstanceStored {
                tenant,
                study_uid,
                source: Some(ae),
                ..
            } = event
            else {
                continue;
            };
            let key = (tenant.as_str().to_owned(), ae.as_str().trim().to_owned());
            let Some(site) = sites.get(&key) else {
                continue;
            };
            // one update per study, not per instance
            let this = (tenant.as_str().to_owned(), study_uid.as_str().to_owned());
            if last.as_ref() == Some(&this) {
                continue;
            }
            last = Some(this);
            if let Err(e) = index
                .stamp_study_site(&tenant, study_uid.as_str(), site)
                .await
            {
                tracing::warn!(error = %e, "could not stamp a study's site");
            }
        }
    });
}

/// How long the reconciler rests after the event queue runs dry (see `start_workflow_tasks`).
const RECONCILE_REST: Duration = Duration::from_millis(50);

/// The RIS's background work: reconcile studies as their images arrive (off the event bus;
/// once per study; a lagging subscriber sweeps the studies received meanwhile) and escalate
/// STAT cases left unread (every 30 s).
fn start_workflow_tasks(
    ris: &radris_ris::Ris,
    archive: &Archive,
    stop: tokio_util::sync::CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    use radris_core::events::Event;
    use tokio::sync::broadcast::error::RecvError;
    let mut events = archive.events().subscribe();
    let reconciler = ris.clone();
    let stop1 = stop.clone();
    let reconcile = tokio::spawn(async move {
        // studies imported while the server was down
        if let Err(e) = reconciler.reconcile_recent(24 * 3600 * 1000).await {
            tracing::warn!(error = %e, "reconciliation of recent studies failed");
        }
        // recently reconciled studies: one look per study, not one per instance
        let mut seen: std::collections::VecDeque<(String, String)> =
            std::collections::VecDeque::with_capacity(4096);
        loop {
            // Ingest publishes one event per instance. Waiting at once for the next would wake
            // a runtime thread for each instance a busy server stores; resting first lets a
            // burst queue up and be read in one go (a study waits RECONCILE_REST at most).
            if events.is_empty() {
                tokio::select! {
                    _ = stop1.cancelled() => return,
                    _ = tokio::time::sleep(RECONCILE_REST) => {}
                }
            }
            let event = tokio::select! {
                _ = stop1.cancelled() => return,
                e = events.recv() => e,
            };
            let (tenant, study) = match event {
                Ok(Event::InstanceStored {
                    tenant, study_uid, ..
                }) => (tenant, study_uid.as_str().to_owned()),
                Ok(_) => continue,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "reconciliation lagged behind ingest; sweeping recent studies"
                    );
                    seen.clear();
                    if let Err(e) = reconciler.reconcile_recent(60 * 60 * 1000).await {
                        tracing::warn!(error = %e, "reconciliation sweep failed");
                    }
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            let key = (tenant.as_str().to_owned(), study.clone());
            if seen.contains(&key) {
                continue;
            }
            if seen.len() == 4096 {
                seen.pop_front();
            }
            seen.push_back(key);
            match reconciler.reconcile_study(&tenant, &study).await {
                Ok(outcome) => tracing::debug!(study = %study, ?outcome, "reconciled"),
                Err(e) => tracing::warn!(study = %study, error = %e, "reconciliation failed"),
            }
        }
    });
    let escalator = ris.clone();
    let escalate = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let tenants = match escalator.tenants().await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "STAT escalation: listing tenants failed");
                    continue;
                }
            };
            for t in tenants {
                match escalator
                    .escalate_overdue(&t, radris_ris::model::Time::now())
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(tenant = %t, cases = n, "STAT cases escalated"),
                    Err(e) => tracing::warn!(tenant = %t, error = %e, "STAT escalation failed"),
                }
            }
        }
    });
    vec![reconcile, escalate]
}
