//! OpenID Connect sign-in, relying-party side: the authorization code flow with PKCE (S256),
//! `state` and `nonce` (OpenID Connect Core 1.0 §3.1, RFC 7636, RFC 9700).
//!
//! 1. [`Oidc::start`] makes a fresh state, nonce, PKCE verifier and browser binding, keeps
//!    them in memory for [`PENDING_LIFETIME`], and returns the provider's authorization URL
//!    (from its discovery document, cached for an hour).
//! 2. [`Oidc::finish`] takes the state back (single use: a replayed state is unknown), checks
//!    that the same browser came back (the binding cookie, against login CSRF), exchanges the
//!    code at the token endpoint (with the PKCE verifier and the client secret), verifies the
//!    ID token ([`verify_id_token`]: signature against the provider's JWKS, refetched once on
//!    an unknown `kid`; `iss`, `aud`, `azp`, `exp`, `nbf`, `iat` with [`LEEWAY_S`] of clock
//!    skew; `nonce`) and maps its claims to an [`Identity`] (tenant, account name, roles).
//!
//! The caller then makes the account ([`crate::Users::ensure_external_user`]) and a session,
//! exactly as a password sign-in does.
//!
//! **Invariants:** only public-key signatures from the provider's JWKS are accepted (`none`
//! never; HS256 keyed by the client secret only with `allow_hs256`); symmetric keys in a JWKS
//! are ignored; the provider is reached over HTTPS unless `allow_insecure_http`; nothing of
//! a token or secret is put into an error message.
//!
//! ```no_run
//! # async fn demo(cfg: radris_core::config::OidcConfig) -> Result<(), radris_auth::oidc::OidcError> {
//! use radris_auth::oidc::{Oidc, ProviderAnswer};
//! let oidc = Oidc::new(&cfg)?.expect("[oidc] has an issuer");
//! let started = oidc.start().await?; // redirect the browser to started.authorize_url
//! // … the provider redirects back with ?code=…&state=…
//! let who = oidc
//!     .finish("state", Some(&started.browser_binding), ProviderAnswer::Code("code"), None)
//!     .await?;
//! println!("{} in {}", who.user, who.tenant);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use radris_core::TenantId;
use radris_core::config::OidcConfig;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::users::ROLES;

/// How long a started sign-in may take at the provider.
pub const PENDING_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_S: u64 = 60;
/// Sign-ins in flight kept at once; beyond, the oldest is dropped (memory stays bounded when
/// someone hammers the start route).
const MAX_PENDING: usize = 10_000;
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// Largest discovery document, JWKS or token response read from the provider.
const MAX_RESPONSE_BYTES: usize = 1 << 20;
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an OIDC sign-in failed. [`OidcError::kind`] tells whose fault it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OidcError {
    #[error("oidc configuration: {0}")]
    Config(String),
    #[error("identity provider {what} at {url}: {reason}")]
    Provider {
        what: &'static str,
        url: String,
        reason: String,
    },
    #[error("unknown, expired or already used sign-in state")]
    UnknownState,
    #[error("the sign-in was started in another browser (binding cookie missing or different)")]
    OtherBrowser,
    #[error("the identity provider refused the sign-in: {0}")]
    Refused(String),
    #[error("the token endpoint rejected the authorization code: {0}")]
    CodeRejected(String),
    #[error("invalid ID token: {0}")]
    IdToken(String),
    #[error("ID token signed with a key the provider does not publish (kid {0:?})")]
    UnknownKey(Option<String>),
    #[error("the ID token grants no RADRIS role and no default roles are configured")]
    NoRole,
    #[error("random number generator failed: {0}")]
    Random(String),
}

/// Whose fault an [`OidcError`] is, for the HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OidcErrorKind {
    /// The request itself is wrong (unknown or replayed state, another browser): 400.
    BadRequest,
    /// The person could not be authenticated (refused, bad code, bad token): 401.
    Unauthenticated,
    /// The provider could not be reached or answered nonsense: 502.
    ProviderUnavailable,
    /// Our side (configuration, RNG): 500.
    Internal,
}

impl OidcError {
    pub fn kind(&self) -> OidcErrorKind {
        match self {
            OidcError::UnknownState | OidcError::OtherBrowser => OidcErrorKind::BadRequest,
            OidcError::Refused(_)
            | OidcError::CodeRejected(_)
            | OidcError::IdToken(_)
            | OidcError::UnknownKey(_)
            | OidcError::NoRole => OidcErrorKind::Unauthenticated,
            OidcError::Provider { .. } => OidcErrorKind::ProviderUnavailable,
            OidcError::Config(_) | OidcError::Random(_) => OidcErrorKind::Internal,
        }
    }
}

/// What the provider sent back to the callback.
#[derive(Debug, Clone, Copy)]
pub enum ProviderAnswer<'a> {
    /// `?code=…`: the person signed in.
    Code(&'a str),
    /// `?error=…` (e.g. `access_denied`): they did not.
    Error(&'a str),
}

/// A started sign-in.
#[derive(Debug, Clone)]
pub struct Started {
    /// Where to send the browser.
    pub authorize_url: String,
    /// A secret to keep in the browser (a short-lived cookie) and hand back to
    /// [`Oidc::finish`]: only the browser that started the sign-in can finish it.
    pub browser_binding: String,
}

/// Whom the provider vouched for, mapped to RADRIS.
#[derive(Debug, Clone)]
pub struct Identity {
    pub tenant: TenantId,
    /// Account name (the `user_claim`, or `sub`).
    pub user: String,
    /// Issuer and subject: who this is at the provider, stable across renames.
    pub identity: String,
    /// Roles from `roles_claim` (comma separated), when it is configured.
    pub roles: Option<String>,
    /// Roles of a new account when `roles` is `None` (comma separated).
    pub default_roles: String,
}

/// What an ID token must say (besides a good signature and time claims).
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
    /// The client secret, when HS256 ID tokens are allowed.
    pub hs256_secret: Option<&'a [u8]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    Basic,
    Post,
    /// Public client: the client id in the form, PKCE only.
    None,
}

#[derive(Debug, Clone, Deserialize)]
struct Provider {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

struct Pending {
    nonce: String,
    verifier: String,
    browser_sha256: String,
    created: Instant,
}

/// The OIDC client of one provider. Cheap to share behind an `Arc`.
pub struct Oidc {
    issuer: String,
    client_id: String,
    client_secret: Option<String>,
    client_auth: ClientAuth,
    redirect_url: String,
    tenant: TenantId,
    scope: String,
    user_claim: String,
    roles_claim: Option<String>,
    default_roles: String,
    allow_insecure_http: bool,
    allow_hs256: bool,
    http: reqwest::Client,
    provider: tokio::sync::Mutex<Option<(Provider, Instant)>>,
    jwks: tokio::sync::Mutex<Option<Vec<Jwk>>>,
    pending: std::sync::Mutex<HashMap<String, Pending>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

fn config(msg: impl Into<String>) -> OidcError {
    OidcError::Config(msg.into())
}

impl Oidc {
    /// Validate `[oidc]`; `None` when it has no issuer (OIDC off). Reads the secret file.
    /// Nothing is fetched yet: the provider may be down when RADRIS starts.
    pub fn new(cfg: &OidcConfig) -> Result<Option<Self>, OidcError> {
        let Some(issuer) = cfg.issuer.as_deref().map(str::trim) else {
            return Ok(None);
        };
        check_url("oidc.issuer", issuer, cfg.allow_insecure_http)?;
        check_url(
            "oidc.redirect_url",
            &cfg.redirect_url,
            cfg.allow_insecure_http,
        )?;
        if cfg.client_id.trim().is_empty() {
            return Err(config("oidc.client_id is required"));
        }
        let client_secret = match (&cfg.client_secret, &cfg.client_secret_file) {
            (Some(_), Some(_)) => {
                return Err(config(
                    "give oidc.client_secret or oidc.client_secret_file, not both",
                ));
            }
            (Some(s), None) => Some(s.clone()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| {
                        config(format!(
                            "reading oidc.client_secret_file {}: {e}",
                            path.display()
                        ))
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            ),
            (None, None) => None,
        }
        .filter(|s| !s.is_empty());
        let client_auth = match (cfg.token_auth_method.as_str(), &client_secret) {
            (_, None) => ClientAuth::None,
            ("client_secret_basic", Some(_)) => ClientAuth::Basic,
            ("client_secret_post", Some(_)) => ClientAuth::Post,
            (other, Some(_)) => {
                return Err(config(format!(
                    "oidc.token_auth_method must be \"client_secret_basic\" or \"client_secret_post\", not {other:?}"
                )));
            }
        };
        if cfg.allow_hs256 && client_secret.is_none() {
            return Err(config("oidc.allow_hs256 needs a client secret"));
        }
        let tenant = TenantId::parse(&cfg.tenant)
            .map_err(|e| config(format!("oidc.tenant {:?}: {e}", cfg.tenant)))?;
        for r in &cfg.default_roles {
            if !ROLES.contains(&r.as_str()) {
                return Err(config(format!(
                    "oidc.default_roles: unknown role {r:?}; roles are {}",
                    ROLES.join(", ")
                )));
            }
        }
        if cfg.roles_claim.is_none() && cfg.default_roles.is_empty() {
            return Err(config(
                "oidc.default_roles may be empty only with a roles_claim",
            ));
        }
        let mut scopes: Vec<&str> = cfg.scopes.iter().map(String::as_str).collect();
        if !scopes.contains(&"openid") {
            scopes.insert(0, "openid");
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .https_only(!cfg.allow_insecure_http)
            .timeout(HTTP_TIMEOUT)
            .connect_timeout(HTTP_TIMEOUT / 2)
            .user_agent(concat!("radris/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| config(format!("HTTP client for the identity provider: {e}")))?;
        Ok(Some(Oidc {
            issuer: issuer.to_owned(),
            client_id: cfg.client_id.trim().to_owned(),
            client_secret,
            client_auth,
            redirect_url: cfg.redirect_url.clone(),
            tenant,
            scope: scopes.join(" "),
            user_claim: cfg.user_claim.clone(),
            roles_claim: cfg.roles_claim.clone().filter(|c| !c.is_empty()),
            default_roles: cfg.default_roles.join(","),
            allow_insecure_http: cfg.allow_insecure_http,
            allow_hs256: cfg.allow_hs256,
            http,
            provider: tokio::sync::Mutex::new(None),
            jwks: tokio::sync::Mutex::new(None),
            pending: std::sync::Mutex::new(HashMap::new()),
        }))
    }

    /// The tenant people of this provider sign into.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// Begin a sign-in: the authorization URL to redirect to and the browser binding.
    pub async fn start(&self) -> Result<Started, OidcError> {
        let provider = self.provider().await?;
        let state = random_token()?;
        let nonce = random_token()?;
        let verifier = random_token()?;
        let browser_binding = random_token()?;
        let challenge = URL_SAFE_NO_PAD.encode(sha256(verifier.as_bytes()));
        let mut url =
            url::Url::parse(&provider.authorization_endpoint).map_err(|e| OidcError::Provider {
                what: "authorization endpoint",
                url: provider.authorization_endpoint.clone(),
                reason: e.to_string(),
            })?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_url)
            .append_pair("scope", &self.scope)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        pending.retain(|_, p| p.created.elapsed() < PENDING_LIFETIME);
        if pending.len() >= MAX_PENDING {
            let oldest = pending
                .iter()
                .min_by_key(|(_, p)| p.created)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                pending.remove(&k);
            }
        }
        pending.insert(
            state,
            Pending {
                nonce,
                verifier,
                browser_sha256: crate::digest(&browser_binding),
                created: Instant::now(),
            },
        );
        Ok(Started {
            authorize_url: url.into(),
            browser_binding,
        })
    }

    /// Finish a sign-in at the callback. The state is spent whatever the outcome.
    /// `iss`: the callback's `iss` parameter (RFC 9207), when the provider sends one; it must
    /// name our provider (defence against mix-up attacks).
    pub async fn finish(
        &self,
        state: &str,
        browser_binding: Option<&str>,
        answer: ProviderAnswer<'_>,
        iss: Option<&str>,
    ) -> Result<Identity, OidcError> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(state)
            .filter(|p| p.created.elapsed() < PENDING_LIFETIME)
            .ok_or(OidcError::UnknownState)?;
        if browser_binding.map(crate::digest).as_deref() != Some(pending.browser_sha256.as_str()) {
            return Err(OidcError::OtherBrowser);
        }
        if iss.is_some_and(|i| i != self.issuer) {
            return Err(OidcError::Refused(
                "the callback names another issuer (iss)".into(),
            ));
        }
        let code = match answer {
            ProviderAnswer::Code(c) if !c.is_empty() => c,
            ProviderAnswer::Code(_) => return Err(OidcError::Refused("empty code".into())),
            ProviderAnswer::Error(e) => return Err(OidcError::Refused(printable(e))),
        };
        let provider = self.provider().await?;
        let id_token = self.exchange(&provider, code, &pending.verifier).await?;
        let claims = self.verify(&id_token, &pending.nonce).await?;
        self.identity(&claims)
    }

    /// The discovery document, fetched at most once an hour (and again after a failure).
    async fn provider(&self) -> Result<Provider, OidcError> {
        let mut cached = self.provider.lock().await;
        if let Some((p, at)) = cached.as_ref()
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(p.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let p: Provider = self.get_json("discovery document", &url).await?;
        let bad = |reason: String| OidcError::Provider {
            what: "discovery document",
            url: url.clone(),
            reason,
        };
        // OpenID Connect Discovery §4.3: the issuer must be exactly the one configured
        if p.issuer != self.issuer {
            return Err(bad(format!(
                "names issuer {:?}, configured is {:?}",
                p.issuer, self.issuer
            )));
        }
        for (name, u) in [
            ("authorization_endpoint", &p.authorization_endpoint),
            ("token_endpoint", &p.token_endpoint),
            ("jwks_uri", &p.jwks_uri),
        ] {
            check_url(name, u, self.allow_insecure_http).map_err(|e| bad(e.to_string()))?;
        }
        *cached = Some((p.clone(), Instant::now()));
        Ok(p)
    }

    /// The provider's signing keys; `refresh` refetches them (key rotation).
    async fn keys(&self, refresh: bool) -> Result<Vec<Jwk>, OidcError> {
        let mut cached = self.jwks.lock().await;
        if !refresh && let Some(k) = cached.as_ref() {
            return Ok(k.clone());
        }
        let provider = self.provider().await?;
        let set: Value = self.get_json("JWKS", &provider.jwks_uri).await?;
        // one odd key (an encryption key of an algorithm we do not know) must not hide the
        // others: keys are parsed one by one
        let keys: Vec<Jwk> = set
            .get("keys")
            .and_then(Value::as_array)
            .map(|ks| {
                ks.iter()
                    .filter_map(|k| serde_json::from_value(k.clone()).ok())
                    .collect()
            })
            .unwrap_or_default();
        *cached = Some(keys.clone());
        Ok(keys)
    }

    async fn verify(&self, token: &str, nonce: &str) -> Result<Map<String, Value>, OidcError> {
        let expected = Expected {
            issuer: &self.issuer,
            client_id: &self.client_id,
            nonce,
            hs256_secret: self
                .client_secret
                .as_deref()
                .filter(|_| self.allow_hs256)
                .map(str::as_bytes),
        };
        let keys = self.keys(false).await?;
        match verify_id_token(token, &keys, &expected) {
            // the provider may have rotated its keys since we fetched them: once more
            Err(OidcError::UnknownKey(_)) => {
                let keys = self.keys(true).await?;
                verify_id_token(token, &keys, &expected)
            }
            other => other,
        }
    }

    async fn exchange(
        &self,
        provider: &Provider,
        code: &str,
        verifier: &str,
    ) -> Result<String, OidcError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_url.as_str()),
            ("code_verifier", verifier),
        ];
        let mut req = self
            .http
            .post(&provider.token_endpoint)
            .header(reqwest::header::ACCEPT, "application/json");
        match (self.client_auth, self.client_secret.as_deref()) {
            // RFC 6749 §2.3.1: id and secret are form-encoded before Basic
            (ClientAuth::Basic, Some(secret)) => {
                let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
                req = req.basic_auth::<String, String>(enc(&self.client_id), Some(enc(secret)));
            }
            (ClientAuth::Post, Some(secret)) => {
                form.push(("client_id", &self.client_id));
                form.push(("client_secret", secret));
            }
            _ => form.push(("client_id", &self.client_id)),
        }
        let url = provider.token_endpoint.clone();
        let unreachable = |reason: String| OidcError::Provider {
            what: "token endpoint",
            url: url.clone(),
            reason,
        };
        let resp = req
            .form(&form)
            .send()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = resp.status();
        let body = read_capped(resp).await.map_err(unreachable)?;
        #[derive(Deserialize)]
        struct TokenResponse {
            id_token: Option<String>,
            error: Option<String>,
        }
        let parsed: Option<TokenResponse> = serde_json::from_slice(&body).ok();
        if status.is_client_error() {
            let error = parsed
                .and_then(|t| t.error)
                .map_or_else(|| format!("HTTP {status}"), |e| printable(&e));
            return Err(OidcError::CodeRejected(error));
        }
        if !status.is_success() {
            return Err(unreachable(format!("HTTP {status}")));
        }
        let parsed = parsed.ok_or_else(|| unreachable("the answer is not JSON".into()))?;
        parsed
            .id_token
            .ok_or_else(|| OidcError::IdToken("the token response has no id_token".into()))
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        what: &'static str,
        url: &str,
    ) -> Result<T, OidcError> {
        let err = |reason: String| OidcError::Provider {
            what,
            url: url.to_owned(),
            reason,
        };
        let resp = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(err(format!("HTTP {}", resp.status())));
        }
        let body = read_capped(resp).await.map_err(err)?;
        serde_json::from_slice(&body).map_err(|e| err(format!("not the expected JSON: {e}")))
    }

    /// Claims → tenant, account name, roles.
    fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, OidcError> {
        let text = |name: &str| {
            claims
                .get(name)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let sub = text("sub").ok_or_else(|| OidcError::IdToken("no sub".into()))?;
        let user = text(&self.user_claim).unwrap_or(sub);
        let roles = match &self.roles_claim {
            None => None,
            Some(path) => {
                let granted = roles_at(claims, path);
                if !granted.is_empty() {
                    Some(granted.join(","))
                } else if !self.default_roles.is_empty() {
                    Some(self.default_roles.clone())
                } else {
                    return Err(OidcError::NoRole);
                }
            }
        };
        Ok(Identity {
            tenant: self.tenant.clone(),
            user: user.to_owned(),
            identity: format!("{}\n{sub}", self.issuer),
            roles,
            default_roles: self.default_roles.clone(),
        })
    }
}

/// Check an ID token: signature (a key of `keys`, or the client secret for HS256 when
/// allowed), `iss`, `aud`, `azp`, `exp`, `nbf`, `iat`, `nonce`. Returns its claims.
/// [`OidcError::UnknownKey`] when no key of the set fits (the caller may refetch the set).
pub fn verify_id_token(
    token: &str,
    keys: &[Jwk],
    expected: &Expected<'_>,
) -> Result<Map<String, Value>, OidcError> {
    // `alg: none` and unknown algorithms fail here: `Algorithm` has no such variant
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| OidcError::IdToken(format!("unreadable header: {e}")))?;
    let alg = header.alg;
    let key = match alg.family() {
        AlgorithmFamily::Hmac => match expected.hs256_secret {
            Some(secret) if alg == Algorithm::HS256 => DecodingKey::from_secret(secret),
            _ => {
                return Err(OidcError::IdToken(format!(
                    "{alg:?} (a shared-secret signature) is not accepted"
                )));
            }
        },
        family => {
            let fits = |k: &&Jwk| {
                let kind_fits = matches!(
                    (&k.algorithm, family),
                    (AlgorithmParameters::RSA(_), AlgorithmFamily::Rsa)
                        | (AlgorithmParameters::EllipticCurve(_), AlgorithmFamily::Ec)
                        | (AlgorithmParameters::OctetKeyPair(_), AlgorithmFamily::Ed)
                );
                let use_fits = !matches!(k.common.public_key_use, Some(PublicKeyUse::Encryption));
                let alg_fits = k
                    .common
                    .key_algorithm
                    .is_none_or(|a| format!("{a:?}") == format!("{alg:?}"));
                kind_fits && use_fits && alg_fits
            };
            let mut candidates = keys.iter().filter(fits);
            let jwk = match &header.kid {
                Some(kid) => candidates.find(|k| k.common.key_id.as_deref() == Some(kid)),
                None => {
                    let all: Vec<&Jwk> = candidates.collect();
                    if all.len() == 1 {
                        all.first().copied()
                    } else {
                        None
                    }
                }
            }
            .ok_or_else(|| OidcError::UnknownKey(header.kid.clone()))?;
            DecodingKey::from_jwk(jwk)
                .map_err(|e| OidcError::IdToken(format!("unusable provider key: {e}")))?
        }
    };
    let mut validation = Validation::new(alg);
    validation.algorithms = vec![alg];
    validation.leeway = LEEWAY_S;
    validation.validate_nbf = true;
    validation.set_issuer(&[expected.issuer]);
    validation.set_audience(&[expected.client_id]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data =
        jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(|e| {
            OidcError::IdToken(match e.kind() {
                ErrorKind::InvalidSignature => "bad signature".into(),
                ErrorKind::ExpiredSignature => "expired".into(),
                ErrorKind::ImmatureSignature => "not valid yet (nbf)".into(),
                ErrorKind::InvalidIssuer => "wrong issuer".into(),
                ErrorKind::InvalidAudience => "wrong audience".into(),
                ErrorKind::MissingRequiredClaim(c) => format!("no {c} claim"),
                ErrorKind::InvalidAlgorithm => "algorithm does not fit the key".into(),
                _ => format!("{e}"),
            })
        })?;
    let claims = data.claims;
    let now = jsonwebtoken::get_current_timestamp();
    match claims.get("iat").and_then(Value::as_u64) {
        Some(iat) if iat <= now.saturating_add(LEEWAY_S) => {}
        Some(_) => return Err(OidcError::IdToken("issued in the future (iat)".into())),
        None => return Err(OidcError::IdToken("no iat claim".into())),
    }
    // Core §3.1.3.7: several audiences need an authorized party, and it must be us
    let audiences = match claims.get("aud") {
        Some(Value::Array(a)) => a.len(),
        _ => 1,
    };
    match claims.get("azp").and_then(Value::as_str) {
        Some(azp) if azp != expected.client_id => {
            return Err(OidcError::IdToken("wrong authorized party (azp)".into()));
        }
        None if audiences > 1 => {
            return Err(OidcError::IdToken(
                "several audiences and no authorized party (azp)".into(),
            ));
        }
        _ => {}
    }
    if claims.get("nonce").and_then(Value::as_str) != Some(expected.nonce) {
        return Err(OidcError::IdToken("nonce does not match".into()));
    }
    Ok(claims)
}

/// RADRIS roles named by the claim at a dotted path: an array of strings or one string of
/// names separated by spaces or commas. Values that are not RADRIS roles are ignored.
fn roles_at(claims: &Map<String, Value>, path: &str) -> Vec<&'static str> {
    let mut parts = path.split('.');
    let first = parts.next().and_then(|p| claims.get(p));
    let value = parts.fold(first, |v, p| v.and_then(|v| v.get(p)));
    let names: Vec<&str> = match value {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(s)) => s
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .collect(),
        _ => Vec::new(),
    };
    ROLES
        .iter()
        .copied()
        .filter(|r| names.contains(r))
        .collect()
}

fn check_url(name: &str, url: &str, allow_http: bool) -> Result<(), OidcError> {
    let parsed = url::Url::parse(url).map_err(|e| config(format!("{name} {url:?}: {e}")))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if allow_http => Ok(()),
        "http" => Err(config(format!(
            "{name} {url:?} must be https (oidc.allow_insecure_http is for tests only)"
        ))),
        other => Err(config(format!("{name} {url:?}: scheme {other:?}"))),
    }
}

async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(format!("answer larger than {MAX_RESPONSE_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A provider's error code as safe to log and audit: printable ASCII, at most 64 characters.
fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(64)
        .collect()
}

fn random_token() -> Result<String, OidcError> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| OidcError::Random(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(raw))
}

fn sha256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const ISS: &str = "https://idp.example.org/realms/h";
    const CLIENT: &str = "radris";
    const NONCE: &str = "n-0S6_WzA2Mj";

    struct Key {
        enc: EncodingKey,
        jwk: Jwk,
    }

    fn ec_key(kid: &str) -> Key {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = kp.public_key_raw();
        assert_eq!(raw.len(), 65);
        let jwk = serde_json::from_value(json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&raw[33..]),
        }))
        .unwrap();
        Key {
            enc: EncodingKey::from_ec_der(&kp.serialize_der()),
            jwk,
        }
    }

    fn good_claims() -> Value {
        let now = jsonwebtoken::get_current_timestamp();
        json!({
            "iss": ISS, "aud": CLIENT, "sub": "248289761001", "nonce": NONCE,
            "iat": now, "exp": now + 300, "preferred_username": "alice",
        })
    }

    fn sign(key: &Key, kid: Option<&str>, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&h, claims, &key.enc).unwrap()
    }

    fn expected() -> Expected<'static> {
        Expected {
            issuer: ISS,
            client_id: CLIENT,
            nonce: NONCE,
            hs256_secret: None,
        }
    }

    /// One place that says how a token fares: `Ok(sub)` or the error text.
    fn check(token: &str, keys: &[Jwk], exp: &Expected<'_>) -> Result<String, String> {
        verify_id_token(token, keys, exp)
            .map(|c| c["sub"].as_str().unwrap_or_default().to_owned())
            .map_err(|e| e.to_string())
    }

    fn with(changes: Value) -> Value {
        let mut c = good_claims();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }

    #[test]
    fn accepts_a_good_token() {
        let k = ec_key("k1");
        let t = sign(&k, Some("k1"), &good_claims());
        assert_eq!(
            check(&t, std::slice::from_ref(&k.jwk), &expected()),
            Ok("248289761001".into())
        );
        // no kid, one key: still found
        let t = sign(&k, None, &good_claims());
        assert!(check(&t, std::slice::from_ref(&k.jwk), &expected()).is_ok());
    }

    #[test]
    fn refuses_bad_claims() {
        let k = ec_key("k1");
        let keys = std::slice::from_ref(&k.jwk);
        let now = jsonwebtoken::get_current_timestamp();
        let cases = [
            (json!({"exp": now - 3600}), "expired"),
            (json!({"nbf": now + 3600}), "not valid yet"),
            (json!({"iat": now + 3600}), "issued in the future"),
            (json!({"iat": null}), "no iat"),
            (json!({"iss": "https://evil.example.org"}), "wrong issuer"),
            (json!({"aud": "someone-else"}), "wrong audience"),
            (json!({"aud": [CLIENT, "other"]}), "no authorized party"),
            (json!({"azp": "other"}), "azp"),
            (json!({"nonce": "replayed"}), "nonce"),
            (json!({"nonce": null}), "nonce"),
            (json!({"sub": null}), "no sub"),
            (json!({"exp": null}), "no exp"),
        ];
        for (change, why) in cases {
            let t = sign(&k, Some("k1"), &with(change.clone()));
            let got = check(&t, keys, &expected());
            assert!(
                got.as_ref().is_err_and(|e| e.contains(why)),
                "{change}: {got:?}, wanted {why}"
            );
        }
        // within the leeway is fine
        let t = sign(&k, Some("k1"), &with(json!({"exp": now - 10})));
        assert!(check(&t, keys, &expected()).is_ok());
        // several audiences with azp = us is fine
        let t = sign(
            &k,
            Some("k1"),
            &with(json!({"aud": [CLIENT, "other"], "azp": CLIENT})),
        );
        assert!(check(&t, keys, &expected()).is_ok());
    }

    #[test]
    fn refuses_unknown_keys_and_forged_signatures() {
        let k = ec_key("k1");
        let other = ec_key("k1");
        // signed by another key under the published kid: bad signature
        let t = sign(&other, Some("k1"), &good_claims());
        assert_eq!(
            check(&t, std::slice::from_ref(&k.jwk), &expected()),
            Err("invalid ID token: bad signature".into())
        );
        // an unknown kid asks for a refetch
        let t = sign(&other, Some("k2"), &good_claims());
        assert!(matches!(
            verify_id_token(&t, std::slice::from_ref(&k.jwk), &expected()),
            Err(OidcError::UnknownKey(Some(kid))) if kid == "k2"
        ));
        // a tampered payload
        let t = sign(&k, Some("k1"), &good_claims());
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&with(json!({"preferred_username": "admin"}))).unwrap());
        parts[1] = &forged;
        assert!(check(&parts.join("."), std::slice::from_ref(&k.jwk), &expected()).is_err());
        // no key at all, and garbage
        assert!(check(&t, &[], &expected()).is_err());
        assert!(check("not.a.token", std::slice::from_ref(&k.jwk), &expected()).is_err());
    }

    #[test]
    fn refuses_none_and_shared_secret_algorithms() {
        let k = ec_key("k1");
        let keys = std::slice::from_ref(&k.jwk);
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&good_claims()).unwrap());
        let none = format!(
            "{}.{body}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#)
        );
        assert!(check(&none, keys, &expected()).is_err_and(|e| e.contains("unreadable header")));
        // HS256 with the client secret: refused unless allowed
        let secret = b"client secret of radris";
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &good_claims(),
            &EncodingKey::from_secret(secret),
        )
        .unwrap();
        assert!(check(&t, keys, &expected()).is_err_and(|e| e.contains("not accepted")));
        let allowed = Expected {
            hs256_secret: Some(secret),
            ..expected()
        };
        assert!(check(&t, keys, &allowed).is_ok());
        let wrong = Expected {
            hs256_secret: Some(b"another secret"),
            ..expected()
        };
        assert!(check(&t, keys, &wrong).is_err());
        // a symmetric key published in the JWKS is never used
        let oct: Jwk = serde_json::from_value(json!({
            "kty": "oct", "kid": "s", "k": URL_SAFE_NO_PAD.encode(secret)
        }))
        .unwrap();
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("s".into());
        let t =
            jsonwebtoken::encode(&h, &good_claims(), &EncodingKey::from_secret(secret)).unwrap();
        assert!(check(&t, &[oct], &expected()).is_err());
    }

    fn oidc(extra: &str) -> Oidc {
        let cfg: OidcConfig = toml::from_str(&format!(
            "issuer = \"{ISS}\"\nclient_id = \"{CLIENT}\"\nredirect_url = \"https://pacs.example.org/api/v1/auth/oidc/callback\"\n{extra}"
        ))
        .unwrap();
        Oidc::new(&cfg).unwrap().unwrap()
    }

    #[test]
    fn maps_claims_to_accounts_and_roles() {
        let plain = oidc("");
        let id = plain.identity(good_claims().as_object().unwrap()).unwrap();
        assert_eq!((id.user.as_str(), id.roles), ("alice", None));
        assert_eq!(id.default_roles, "referring");
        let id = plain
            .identity(
                with(json!({"preferred_username": null}))
                    .as_object()
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(id.user, "248289761001");
        let keycloak = oidc("roles_claim = \"realm_access.roles\"\ndefault_roles = []");
        let c =
            with(json!({"realm_access": {"roles": ["offline_access", "radiologist", "admin"]}}));
        let id = keycloak.identity(c.as_object().unwrap()).unwrap();
        assert_eq!(id.roles.as_deref(), Some("admin,radiologist"));
        let c = with(json!({"realm_access": {"roles": ["offline_access"]}}));
        assert!(matches!(
            keycloak.identity(c.as_object().unwrap()),
            Err(OidcError::NoRole)
        ));
        let spaced = oidc("roles_claim = \"groups\"");
        let c = with(json!({"groups": "auditor other"}));
        let id = spaced.identity(c.as_object().unwrap()).unwrap();
        assert_eq!(id.roles.as_deref(), Some("auditor"));
        let c = with(json!({"groups": 7}));
        assert_eq!(
            spaced
                .identity(c.as_object().unwrap())
                .unwrap()
                .roles
                .as_deref(),
            Some("referring")
        );
    }

    #[test]
    fn configuration_is_checked() {
        let bad = |extra: &str, issuer: &str| {
            let cfg: OidcConfig = toml::from_str(&format!(
                "issuer = \"{issuer}\"\nclient_id = \"c\"\nredirect_url = \"https://p.example.org/cb\"\n{extra}"
            ))
            .unwrap();
            Oidc::new(&cfg).unwrap_err().to_string()
        };
        assert!(bad("", "http://idp.example.org").contains("must be https"));
        assert!(
            bad("client_secret = \"s\"\ntoken_auth_method = \"jwt\"", ISS)
                .contains("token_auth_method")
        );
        assert!(bad("default_roles = [\"god\"]", ISS).contains("unknown role"));
        assert!(bad("default_roles = []", ISS).contains("roles_claim"));
        assert!(bad("allow_hs256 = true", ISS).contains("client secret"));
        assert!(bad("tenant = \"../x\"", ISS).contains("tenant"));
        assert!(Oidc::new(&OidcConfig::default()).unwrap().is_none());
        let insecure: OidcConfig = toml::from_str(
            "issuer = \"http://127.0.0.1:9\"\nclient_id = \"c\"\nredirect_url = \"http://127.0.0.1/cb\"\nallow_insecure_http = true",
        )
        .unwrap();
        assert!(Oidc::new(&insecure).unwrap().is_some());
    }

    #[tokio::test]
    async fn state_is_single_use_and_bound_to_the_browser() {
        let o = oidc("");
        let insert = |state: &str, binding: &str| {
            o.pending.lock().unwrap().insert(
                state.to_owned(),
                Pending {
                    nonce: NONCE.into(),
                    verifier: "v".into(),
                    browser_sha256: crate::digest(binding),
                    created: Instant::now(),
                },
            );
        };
        insert("s1", "b1");
        let r = o
            .finish("s1", Some("b2"), ProviderAnswer::Error("x"), None)
            .await;
        assert!(matches!(r, Err(OidcError::OtherBrowser)));
        // spent, even though it failed
        let r = o
            .finish("s1", Some("b1"), ProviderAnswer::Error("x"), None)
            .await;
        assert!(matches!(r, Err(OidcError::UnknownState)));
        insert("s2", "b2");
        let r = o
            .finish(
                "s2",
                Some("b2"),
                ProviderAnswer::Error("access_denied"),
                None,
            )
            .await;
        assert!(matches!(r, Err(OidcError::Refused(e)) if e == "access_denied"));
        assert_eq!(OidcError::UnknownState.kind(), OidcErrorKind::BadRequest);
        assert_eq!(
            OidcError::IdToken(String::new()).kind(),
            OidcErrorKind::Unauthenticated
        );
    }
}
