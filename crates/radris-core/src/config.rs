//! Server configuration. Every option has a safe default; the `radris` binary layers a TOML
//! file, `RADRIS_*` environment variables and command-line flags on top of [`Config::default`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::{AeTitle, IdError, TenantId};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("configuration file is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("configuration: {0}")]
    Id(#[from] IdError),
    #[error("configuration: {0}")]
    Invalid(String),
}

/// What to do when an instance arrives whose SOP Instance UID is already stored for the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DuplicatePolicy {
    /// Keep the stored copy, answer success (the sender's retry after a lost response must
    /// not fail). The default: it never destroys acknowledged data.
    #[default]
    KeepFirst,
    /// Replace the stored copy with the new one (re-sent corrected images).
    Overwrite,
    /// Refuse the new copy with a failure status (0xA900 class "duplicate").
    Reject,
}

/// The whole configuration, as it appears in the TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; default: `sqlite://<data_dir>/index.sqlite`.
    pub database_url: Option<String>,
    pub dicom_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub ae_title: String,
    /// Accept any calling AE into the `default` tenant.
    pub open_ae: bool,
    pub duplicate_policy: DuplicatePolicy,
    pub dimse: DimseLimits,
    pub http: HttpConfig,
    pub tenants: Vec<TenantConfig>,
    pub remote_aes: Vec<RemoteAeConfig>,
    pub tls: TlsConfig,
    pub oidc: OidcConfig,
    pub audit_syslog: AuditSyslogConfig,
}

/// Limits of the DIMSE service.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DimseLimits {
    /// Largest P-DATA PDU we accept and announce (bytes).
    pub max_pdu_length: u32,
    /// ARTIM: how long a new connection may take to send its A-ASSOCIATE-RQ (seconds).
    pub artim_timeout_s: u64,
    /// How long an established association may stay silent (seconds).
    pub idle_timeout_s: u64,
    /// Most associations served at once; further connections are refused.
    pub max_associations: usize,
    /// Largest single instance accepted over DIMSE (bytes).
    pub max_instance_bytes: u64,
}

impl DimseLimits {
    pub fn artim_timeout(&self) -> Duration {
        Duration::from_secs(self.artim_timeout_s.max(1))
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_s.max(1))
    }
}

impl Default for DimseLimits {
    fn default() -> Self {
        DimseLimits {
            max_pdu_length: 1_048_576,
            artim_timeout_s: 30,
            idle_timeout_s: 300,
            max_associations: 200,
            max_instance_bytes: 8 << 30,
        }
    }
}

/// The HTTP service (DICOMweb, REST).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Serve requests without credentials as an anonymous principal of the `default` tenant
    /// with read and write scopes. For benchmarks and closed test networks only; off by
    /// default, and every such request is still audited as `anonymous`.
    pub anonymous: bool,
    /// Largest request body outside STOW-RS (bytes).
    pub max_body_bytes: u64,
    /// Largest STOW-RS request (bytes); parts are streamed to disk, never held in memory.
    pub max_stow_bytes: u64,
    /// Longest time a request may take, STOW-RS excepted (seconds).
    pub request_timeout_s: u64,
    /// Origins allowed by CORS (e.g. `https://viewer.example.org`); empty: same origin only.
    pub cors_origins: Vec<String>,
    /// Base URL clients reach us at (for BulkDataURI and Location headers), e.g.
    /// `https://pacs.example.org`; default: derived from the request's Host header.
    pub public_url: Option<String>,
    /// WebAuthn relying party id (a domain: passkeys are bound to it, so changing it orphans
    /// every registered passkey); default: the host of `public_url`, else `localhost`.
    pub webauthn_rp_id: Option<String>,
    /// The origin browsers show when they sign (e.g. `https://pacs.example.org`); default:
    /// the origin of `public_url`, else any `http(s)://localhost:<port>` (development).
    pub webauthn_origin: Option<String>,
    /// The built web application (`web/dist`: `index.html`, `assets/`) served at `/`;
    /// default: `web/dist` under the current directory, else `../../web/dist` beside the
    /// binary (a checkout's `target/debug/radris`), whichever holds an `index.html`.
    pub web_dir: Option<PathBuf>,
    /// Memory for series volumes built for `/api/v1/render/…` (MiB, least recently used
    /// first out).
    pub volume_cache_mib: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            anonymous: false,
            max_body_bytes: 1 << 20,
            max_stow_bytes: 64 << 30,
            request_timeout_s: 300,
            cors_origins: Vec::new(),
            public_url: None,
            webauthn_rp_id: None,
            webauthn_origin: None,
            web_dir: None,
            volume_cache_mib: 1024,
        }
    }
}

/// TLS for HTTP and DICOM. With a certificate and key, `http = true` turns the HTTP port
/// into HTTPS (with HSTS), and `dicom_listen` opens a DICOM TLS port (PS3.15 Annex B;
/// 2762 by convention) beside the plain one. TLS 1.3 is preferred; 1.2 is allowed for
/// older modalities unless `min_version = "1.3"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first).
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates: when set, DICOM TLS clients must present a certificate it signed.
    pub client_ca_file: Option<PathBuf>,
    /// Serve HTTP over TLS.
    pub http: bool,
    /// Address of the DICOM TLS listener (none: no DICOM TLS).
    pub dicom_listen: Option<SocketAddr>,
    /// `"1.2"` (default) or `"1.3"`.
    pub min_version: Option<String>,
}

impl TlsConfig {
    /// Whether anything is served over TLS.
    pub fn enabled(&self) -> bool {
        self.http || self.dicom_listen.is_some()
    }

    /// Check the combination before anything is bound.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled() && (self.cert_file.is_none() || self.key_file.is_none()) {
            return Err(ConfigError::Invalid(
                "tls: cert_file and key_file are required for tls.http or tls.dicom_listen".into(),
            ));
        }
        match self.min_version.as_deref() {
            None | Some("1.2") | Some("1.3") => Ok(()),
            Some(other) => Err(ConfigError::Invalid(format!(
                "tls.min_version must be \"1.2\" or \"1.3\", not {other:?}"
            ))),
        }
    }
}

/// Sign-in through an external OpenID Connect identity provider (Keycloak, Entra ID, Google
/// Workspace…): authorization code flow with PKCE. Off unless `issuer` is set. People who
/// sign in this way get an account in `tenant` on first sign-in (no usable password).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer URL, exactly as its discovery document and ID tokens spell it
    /// (e.g. `https://sso.example.org/realms/hospital`). None: OIDC sign-in is off.
    pub issuer: Option<String>,
    /// Our client id at the provider (the expected `aud` of ID tokens).
    pub client_id: String,
    /// The client secret; prefer `client_secret_file` (read at start, trailing newline
    /// stripped). Neither: a public client (PKCE only).
    pub client_secret: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    /// How the secret is sent to the token endpoint: `client_secret_basic` (default) or
    /// `client_secret_post`.
    pub token_auth_method: String,
    /// Our callback as registered at the provider, e.g.
    /// `https://pacs.example.org/api/v1/auth/oidc/callback`.
    pub redirect_url: String,
    /// The RADRIS tenant these people sign into.
    pub tenant: String,
    /// Scopes asked for; `openid` is added when missing.
    pub scopes: Vec<String>,
    /// The claim that names the account (falls back to `sub` when absent or empty).
    pub user_claim: String,
    /// A claim (dotted path for nested ones, e.g. `realm_access.roles`) whose values that
    /// name RADRIS roles become the account's roles at every sign-in. None: roles are set
    /// once, at first sign-in, from `default_roles`, and then managed in RADRIS.
    pub roles_claim: Option<String>,
    /// Roles of a new account when `roles_claim` is unset or names no RADRIS role; empty:
    /// such people are refused.
    pub default_roles: Vec<String>,
    /// Accept a provider on plain `http://` (loopback tests only; never in production).
    pub allow_insecure_http: bool,
    /// Accept ID tokens signed with HS256 keyed by the client secret (some providers do this
    /// for confidential clients). Off: only public-key signatures from the provider's JWKS.
    pub allow_hs256: bool,
}

impl Default for OidcConfig {
    fn default() -> Self {
        OidcConfig {
            issuer: None,
            client_id: String::new(),
            client_secret: None,
            client_secret_file: None,
            token_auth_method: "client_secret_basic".to_owned(),
            redirect_url: String::new(),
            tenant: TenantId::DEFAULT.to_owned(),
            scopes: vec!["openid".into(), "profile".into(), "email".into()],
            user_claim: "preferred_username".to_owned(),
            roles_claim: None,
            default_roles: vec!["referring".into()],
            allow_insecure_http: false,
            allow_hs256: false,
        }
    }
}

/// Forwarding of the audit log to an audit record repository as DICOM PS3.15 A.5 audit
/// messages over syslog (RFC 5424) on TLS (RFC 5425), as IHE ATNA describes. Off unless
/// `addr` is set; the repository's certificate must be signed by a CA in `ca_file`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSyslogConfig {
    /// `host:port` of the repository (6514 is syslog over TLS).
    pub addr: Option<String>,
    /// Name in the repository's certificate (default: the host of `addr`).
    pub server_name: Option<String>,
    /// PEM CA bundle that signs the repository's certificate.
    pub ca_file: Option<PathBuf>,
    /// Our certificate chain and key, for repositories that require mutual TLS.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// RFC 5424 HOSTNAME (default: `localhost`) and the AuditSourceID suffix.
    pub hostname: Option<String>,
}

impl AuditSyslogConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.addr.is_some() && self.ca_file.is_none() {
            return Err(ConfigError::Invalid(
                "audit_syslog: ca_file is required (the repository must be authenticated)".into(),
            ));
        }
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            return Err(ConfigError::Invalid(
                "audit_syslog: client_cert_file and client_key_file come together".into(),
            ));
        }
        Ok(())
    }
}

/// A tenant and whether it accepts unknown calling AEs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub name: String,
    #[serde(default)]
    pub open: bool,
}

/// A remote application entity: allowed to call us (into `tenant`) and, when it has a host and
/// port, usable as a C-MOVE destination.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteAeConfig {
    pub ae_title: String,
    #[serde(default = "default_tenant_name")]
    pub tenant: String,
    pub host: Option<String>,
    pub port: Option<u16>,
    /// The site (hospital, department) this AE sends from: stamped on the studies stored
    /// through it, for site-scoped authorisation policies.
    #[serde(default)]
    pub site: Option<String>,
    /// Send this AE its Storage Commitment results (N-EVENT-REPORT) on a new association
    /// that we open to its host and port, instead of on the association that asked for the
    /// commitment (PS3.4 J.3.3). Needs `host` and `port`.
    #[serde(default)]
    pub storage_commitment_new_association: bool,
}

fn default_tenant_name() -> String {
    TenantId::DEFAULT.to_owned()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("radris-data"),
            database_url: None,
            dicom_listen: SocketAddr::from(([127, 0, 0, 1], 11112)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            ae_title: "RADRIS".to_owned(),
            open_ae: false,
            duplicate_policy: DuplicatePolicy::default(),
            dimse: DimseLimits::default(),
            http: HttpConfig::default(),
            tenants: Vec::new(),
            remote_aes: Vec::new(),
            tls: TlsConfig::default(),
            oidc: OidcConfig::default(),
            audit_syslog: AuditSyslogConfig::default(),
        }
    }
}

/// A remote AE after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteAe {
    pub ae_title: AeTitle,
    pub tenant: TenantId,
    pub address: Option<(String, u16)>,
    /// Storage Commitment results go to this AE on a new association (see
    /// [`RemoteAeConfig::storage_commitment_new_association`]).
    pub storage_commitment_new_association: bool,
}

/// The AE and tenant tables after validation, as the DIMSE service uses them.
#[derive(Debug, Clone)]
pub struct AeDirectory {
    pub local_ae: AeTitle,
    /// Tenants that accept unknown calling AEs; `default` is here when `open_ae` is set.
    pub open_tenants: Vec<TenantId>,
    pub tenants: Vec<TenantId>,
    pub remotes: Vec<RemoteAe>,
}

impl AeDirectory {
    /// The tenant a calling AE belongs to, or `None` when it must be rejected.
    pub fn tenant_of(&self, calling: &AeTitle) -> Option<TenantId> {
        if let Some(r) = self.remotes.iter().find(|r| &r.ae_title == calling) {
            return Some(r.tenant.clone());
        }
        // an open tenant takes unknown AEs; `default` first when several are open
        self.open_tenants
            .iter()
            .find(|t| t.as_str() == TenantId::DEFAULT)
            .or_else(|| self.open_tenants.first())
            .cloned()
    }

    /// The address of a move destination, which must belong to the same tenant.
    pub fn move_destination(&self, tenant: &TenantId, ae: &AeTitle) -> Option<(String, u16)> {
        self.remotes
            .iter()
            .find(|r| &r.ae_title == ae && &r.tenant == tenant)
            .and_then(|r| r.address.clone())
    }

    /// The remote AE entry of a calling AE within its tenant, if it is declared.
    pub fn remote(&self, tenant: &TenantId, ae: &AeTitle) -> Option<&RemoteAe> {
        self.remotes
            .iter()
            .find(|r| &r.ae_title == ae && &r.tenant == tenant)
    }
}

impl Config {
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Ok(toml::from_str(text)?)
    }

    /// Validate the AE and tenant tables.
    pub fn ae_directory(&self) -> Result<AeDirectory, ConfigError> {
        let local_ae = AeTitle::parse(&self.ae_title)?;
        let mut tenants = vec![TenantId::default_tenant()];
        let mut open_tenants = Vec::new();
        for t in &self.tenants {
            let id = TenantId::parse(&t.name)?;
            if t.open && !open_tenants.contains(&id) {
                open_tenants.push(id.clone());
            }
            if !tenants.contains(&id) {
                tenants.push(id);
            }
        }
        if self.open_ae && !open_tenants.iter().any(|t| t.as_str() == TenantId::DEFAULT) {
            open_tenants.push(TenantId::default_tenant());
        }
        let mut remotes: Vec<RemoteAe> = Vec::new();
        for r in &self.remote_aes {
            let ae_title = AeTitle::parse(&r.ae_title)?;
            let tenant = TenantId::parse(&r.tenant)?;
            if !tenants.contains(&tenant) {
                return Err(ConfigError::Invalid(format!(
                    "remote AE {ae_title} names tenant {tenant}, which is not declared in [[tenants]]"
                )));
            }
            if remotes.iter().any(|x| x.ae_title == ae_title) {
                return Err(ConfigError::Invalid(format!(
                    "remote AE {ae_title} is declared twice"
                )));
            }
            let address = match (&r.host, r.port) {
                (Some(h), Some(p)) => Some((h.clone(), p)),
                (None, None) => None,
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "remote AE {ae_title}: give both host and port, or neither"
                    )));
                }
            };
            if r.storage_commitment_new_association && address.is_none() {
                return Err(ConfigError::Invalid(format!(
                    "remote AE {ae_title}: storage_commitment_new_association needs host and port"
                )));
            }
            remotes.push(RemoteAe {
                ae_title,
                tenant,
                address,
                storage_commitment_new_association: r.storage_commitment_new_association,
            });
        }
        Ok(AeDirectory {
            local_ae,
            open_tenants,
            tenants,
            remotes,
        })
    }

    /// The index URL, defaulting to SQLite inside the data directory.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("index.sqlite").display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tenants_and_remotes() {
        let cfg = Config::from_toml(
            r#"
            ae_title = "RADRIS"
            [[tenants]]
            name = "other"
            [[remote_aes]]
            ae_title = "MODALITY1"
            host = "10.0.0.5"
            port = 104
            [[remote_aes]]
            ae_title = "OTHERSCU"
            tenant = "other"
            "#,
        )
        .unwrap();
        let dir = cfg.ae_directory().unwrap();
        let m = AeTitle::parse("MODALITY1").unwrap();
        assert_eq!(dir.tenant_of(&m).unwrap().as_str(), "default");
        let o = AeTitle::parse("OTHERSCU").unwrap();
        assert_eq!(dir.tenant_of(&o).unwrap().as_str(), "other");
        assert!(
            dir.tenant_of(&AeTitle::parse("STRANGER").unwrap())
                .is_none()
        );
        let default = TenantId::default_tenant();
        assert_eq!(
            dir.move_destination(&default, &m),
            Some(("10.0.0.5".into(), 104))
        );
        // a destination of another tenant is not reachable
        assert_eq!(
            dir.move_destination(&TenantId::parse("other").unwrap(), &m),
            None
        );
    }

    #[test]
    fn storage_commitment_on_a_new_association() {
        let cfg = Config::from_toml(
            r#"
            [[remote_aes]]
            ae_title = "MODALITY1"
            host = "10.0.0.5"
            port = 104
            storage_commitment_new_association = true
            [[remote_aes]]
            ae_title = "MODALITY2"
            "#,
        )
        .unwrap();
        let dir = cfg.ae_directory().unwrap();
        let default = TenantId::default_tenant();
        let m1 = AeTitle::parse("MODALITY1").unwrap();
        let m2 = AeTitle::parse("MODALITY2").unwrap();
        assert!(
            dir.remote(&default, &m1)
                .unwrap()
                .storage_commitment_new_association
        );
        assert!(
            !dir.remote(&default, &m2)
                .unwrap()
                .storage_commitment_new_association
        );
        // a new association needs somewhere to go
        let cfg = Config::from_toml(
            "[[remote_aes]]\nae_title = \"X\"\nstorage_commitment_new_association = true\n",
        )
        .unwrap();
        assert!(cfg.ae_directory().is_err());
    }

    #[test]
    fn open_ae_admits_unknown_into_default() {
        let cfg = Config {
            open_ae: true,
            ..Config::default()
        };
        let dir = cfg.ae_directory().unwrap();
        let t = dir.tenant_of(&AeTitle::parse("ANY").unwrap()).unwrap();
        assert_eq!(t.as_str(), "default");
    }

    #[test]
    fn rejects_unknown_tenant_and_bad_fields() {
        let cfg =
            Config::from_toml("[[remote_aes]]\nae_title = \"X\"\ntenant = \"nope\"\n").unwrap();
        assert!(cfg.ae_directory().is_err());
        assert!(Config::from_toml("no_such_option = 1").is_err());
    }
}
