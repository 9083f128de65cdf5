//! Scoped, revocable API tokens for scripts and integrations (`Authorization: Bearer`).
//!
//! A token is `rdx_` followed by 64 hex digits (256 random bits). Only its SHA-256 is stored:
//! a stolen database yields no usable token. Because the secret has full entropy a slow hash
//! such as Argon2 adds nothing here (passwords get Argon2id).
//!
//! Successful lookups are cached for [`CACHE_TTL`] so hot paths (frames, metadata) do not
//! query the database on every request; revoking through [`Tokens::revoke`] evicts the entry
//! at once on this node, other nodes see it within the TTL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use radris_core::TenantId;
use sqlx::{AnyPool, Row};

use crate::principal::{Principal, Scopes};
use crate::{AuthError, digest, now_millis};

/// How long a validated token is trusted without asking the database again.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
const PREFIX: &str = "rdx_";

/// A token as listed (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub token_id: String,
    pub tenant: String,
    pub user: String,
    pub scopes: String,
    pub created_at: i64,
    /// 0 when the token does not expire.
    pub expires_at: i64,
    pub revoked: bool,
}

/// The token table and its cache.
pub struct Tokens {
    pool: AnyPool,
    cache: Mutex<HashMap<String, (Principal, i64, Instant)>>,
}

impl Tokens {
    pub fn new(pool: AnyPool) -> Self {
        Tokens {
            pool,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Create a token; returns `(token_id, secret)`. The secret is not stored.
    pub async fn create(
        &self,
        tenant: &TenantId,
        user: &str,
        scopes: Scopes,
        lifetime: Option<Duration>,
    ) -> Result<(String, String), AuthError> {
        let user = user.trim();
        if user.is_empty() || user.len() > 128 || user.chars().any(char::is_control) {
            return Err(AuthError::Invalid(
                "user name must be 1-128 printable characters".into(),
            ));
        }
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| AuthError::Random(e.to_string()))?;
        let secret = format!("{PREFIX}{}", hex::encode(raw));
        let token_id = uuid::Uuid::now_v7().to_string();
        let now = now_millis();
        let expires_at = lifetime.map_or(0, |d| now + d.as_millis() as i64);
        sqlx::query(
            "INSERT INTO api_tokens (token_id, tenant_id, user_name, scopes, token_sha256, created_at, expires_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0)",
        )
        .bind(&token_id)
        .bind(tenant.as_str())
        .bind(user)
        .bind(scopes.to_string())
        .bind(digest(&secret))
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await
        .map_err(AuthError::db("creating a token"))?;
        Ok((token_id, secret))
    }

    /// The principal a presented bearer token stands for.
    pub async fn authenticate(&self, presented: &str) -> Result<Principal, AuthError> {
        let presented = presented.trim();
        if !presented.starts_with(PREFIX) || presented.len() != PREFIX.len() + 64 {
            return Err(AuthError::Unauthenticated);
        }
        let key = digest(presented);
        let now = now_millis();
        if let Ok(cache) = self.cache.lock()
            && let Some((p, expires_at, at)) = cache.get(&key)
            && at.elapsed() < CACHE_TTL
            && (*expires_at == 0 || *expires_at > now)
        {
            return Ok(p.clone());
        }
        let row = sqlx::query(
            "SELECT token_id, tenant_id, user_name, scopes, expires_at, revoked_at FROM api_tokens WHERE token_sha256 = $1",
        )
        .bind(&key)
        .fetch_optional(&self.pool)
        .await
        .map_err(AuthError::db("looking up a token"))?
        .ok_or(AuthError::Unauthenticated)?;
        let get_s = |i: usize| -> Result<String, AuthError> {
            row.try_get::<String, _>(i)
                .map_err(AuthError::db("reading a token"))
        };
        let get_i = |i: usize| -> Result<i64, AuthError> {
            row.try_get::<i64, _>(i)
                .map_err(AuthError::db("reading a token"))
        };
        let (expires_at, revoked_at) = (get_i(4)?, get_i(5)?);
        if revoked_at != 0 || (expires_at != 0 && expires_at <= now) {
            return Err(AuthError::Unauthenticated);
        }
        let tenant = TenantId::parse(&get_s(1)?).map_err(|_| AuthError::Unauthenticated)?;
        let principal = Principal {
            tenant,
            actor: format!("token:{}", get_s(0)?),
            user: get_s(2)?,
            scopes: Scopes::parse(&get_s(3)?).map_err(|_| AuthError::Unauthenticated)?,
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(key, (principal.clone(), expires_at, Instant::now()));
        }
        Ok(principal)
    }

    /// Revoke a token of a tenant. Returns false when no such live token exists.
    pub async fn revoke(&self, tenant: &TenantId, token_id: &str) -> Result<bool, AuthError> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE tenant_id = $2 AND token_id = $3 AND revoked_at = 0",
        )
        .bind(now_millis())
        .bind(tenant.as_str())
        .bind(token_id)
        .execute(&self.pool)
        .await
        .map_err(AuthError::db("revoking a token"))?
        .rows_affected()
            > 0;
        if let Ok(mut cache) = self.cache.lock() {
            let actor = format!("token:{token_id}");
            cache.retain(|_, (p, _, _)| p.actor != actor);
        }
        Ok(done)
    }

    /// The tokens of a tenant, newest first.
    pub async fn list(&self, tenant: &TenantId) -> Result<Vec<TokenInfo>, AuthError> {
        let rows = sqlx::query(
            "SELECT token_id, tenant_id, user_name, scopes, created_at, expires_at, revoked_at FROM api_tokens \
             WHERE tenant_id = $1 ORDER BY created_at DESC, token_id DESC",
        )
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(AuthError::db("listing tokens"))?;
        rows.iter()
            .map(|r| {
                let s = |i| {
                    r.try_get::<String, _>(i)
                        .map_err(AuthError::db("reading a token"))
                };
                let n = |i| {
                    r.try_get::<i64, _>(i)
                        .map_err(AuthError::db("reading a token"))
                };
                Ok(TokenInfo {
                    token_id: s(0)?,
                    tenant: s(1)?,
                    user: s(2)?,
                    scopes: s(3)?,
                    created_at: n(4)?,
                    expires_at: n(5)?,
                    revoked: n(6)? != 0,
                })
            })
            .collect()
    }
}
