//! Break-glass grants: emergency access with a reason, a time limit and its own audit events.
//! Stored in the `break_glass` table (migration 8 of `radris-store`).

use std::time::Duration;

use radris_core::audit::{AuditRecord, Outcome};
use radris_core::{TenantId, Uid};
use sqlx::{AnyPool, Row};

use super::{Action, PolicyError, Resource, Subject};

/// How long a grant lasts when the caller names no duration.
pub const BREAK_GLASS_DEFAULT: Duration = Duration::from_secs(3600);
/// The longest grant that can be opened.
pub const BREAK_GLASS_MAX: Duration = Duration::from_secs(4 * 3600);
/// The shortest reason accepted, in characters (after trimming).
pub const BREAK_GLASS_MIN_REASON: usize = 10;
const MAX_REASON: usize = 2000;

/// What a grant opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakGlassScope {
    /// Every study of the tenant.
    Tenant,
    /// One study.
    Study(Uid),
}

/// An open break-glass grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlassGrant {
    pub id: String,
    pub tenant: TenantId,
    pub user: String,
    pub scope: BreakGlassScope,
    /// Why, in the user's words (trimmed).
    pub reason: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Milliseconds since the Unix epoch; the grant no longer counts from this instant.
    pub expires_at: i64,
}

impl BreakGlassGrant {
    /// Whether the grant lets `subject` reach `resource` at `now` (it is theirs, in the
    /// resource's tenant, not expired, and its scope covers the resource).
    pub fn covers(&self, subject: &Subject, resource: &Resource, now: i64) -> bool {
        self.tenant == subject.tenant
            && self.user == subject.user
            && &self.tenant == resource.tenant()
            && now < self.expires_at
            && match (&self.scope, resource) {
                (BreakGlassScope::Tenant, _) => true,
                (BreakGlassScope::Study(uid), Resource::Study(s)) => uid == &s.study_uid,
                (BreakGlassScope::Study(_), Resource::Tenant(_)) => false,
            }
    }

    fn resource(&self) -> String {
        match &self.scope {
            BreakGlassScope::Tenant => format!("tenant:{}", self.tenant),
            BreakGlassScope::Study(uid) => format!("study:{uid}"),
        }
    }

    /// The audit record of the opening (`auth.break-glass.open`). The caller must write it
    /// when [`super::PolicyEngine::break_glass_open`] succeeds.
    pub fn audit_record(&self, source: &str) -> AuditRecord {
        AuditRecord {
            tenant: self.tenant.to_string(),
            actor: format!("user:{}", self.user),
            action: "auth.break-glass.open".into(),
            outcome: Outcome::Success,
            resource: self.resource(),
            detail: serde_json::json!({
                "grant": self.id,
                "reason": self.reason,
                "expires_at": self.expires_at,
                "minutes": (self.expires_at - self.created_at) / 60_000,
            })
            .to_string(),
            source: source.to_owned(),
        }
    }

    /// The audit record of an access the grant allowed (`auth.break-glass.access`): written
    /// for every decision with [`super::Decision::via_break_glass`], in addition to the
    /// ordinary audit record of the access.
    pub fn access_record(&self, action: Action, resource: &Resource, source: &str) -> AuditRecord {
        AuditRecord {
            tenant: self.tenant.to_string(),
            actor: format!("user:{}", self.user),
            action: "auth.break-glass.access".into(),
            outcome: Outcome::Success,
            resource: resource.describe(),
            detail: serde_json::json!({ "grant": self.id, "action": action.as_str() }).to_string(),
            source: source.to_owned(),
        }
    }

    /// The audit record of closing the grant early (`auth.break-glass.close`).
    pub fn close_record(&self, source: &str) -> AuditRecord {
        AuditRecord {
            tenant: self.tenant.to_string(),
            actor: format!("user:{}", self.user),
            action: "auth.break-glass.close".into(),
            outcome: Outcome::Success,
            resource: self.resource(),
            detail: serde_json::json!({ "grant": self.id }).to_string(),
            source: source.to_owned(),
        }
    }
}

/// Check a request to open a grant; the trimmed reason.
pub(crate) fn check_request(
    subject: &Subject,
    reason: &str,
    duration: Option<Duration>,
) -> Result<String, PolicyError> {
    let refuse = |why: String| PolicyError::BreakGlassRefused {
        tenant: subject.tenant.clone(),
        user: subject.user.clone(),
        reason: why,
    };
    let reason = reason.trim();
    let chars = reason.chars().count();
    if chars < BREAK_GLASS_MIN_REASON {
        return Err(refuse(format!(
            "a reason of at least {BREAK_GLASS_MIN_REASON} characters is required"
        )));
    }
    if chars > MAX_REASON {
        return Err(refuse(format!(
            "the reason may be at most {MAX_REASON} characters"
        )));
    }
    if reason.chars().any(char::is_control) {
        return Err(refuse(
            "the reason may not contain control characters".into(),
        ));
    }
    if let Some(d) = duration {
        if d.is_zero() {
            return Err(refuse("the duration must be positive".into()));
        }
        if d > BREAK_GLASS_MAX {
            return Err(refuse(format!(
                "the duration may be at most {} minutes",
                BREAK_GLASS_MAX.as_secs() / 60
            )));
        }
    }
    Ok(reason.to_owned())
}

pub(crate) async fn insert(pool: &AnyPool, g: &BreakGlassGrant) -> Result<(), PolicyError> {
    let study = match &g.scope {
        BreakGlassScope::Tenant => "",
        BreakGlassScope::Study(uid) => uid.as_str(),
    };
    sqlx::query(
        "INSERT INTO break_glass (grant_id, tenant_id, user_name, study_uid, reason, created_at, expires_at, closed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0)",
    )
    .bind(&g.id)
    .bind(g.tenant.as_str())
    .bind(&g.user)
    .bind(study)
    .bind(&g.reason)
    .bind(g.created_at)
    .bind(g.expires_at)
    .execute(pool)
    .await
    .map_err(PolicyError::db("opening a break-glass grant", &g.tenant))?;
    Ok(())
}

pub(crate) async fn close(
    pool: &AnyPool,
    tenant: &TenantId,
    user: &str,
    grant_id: &str,
    now: i64,
) -> Result<bool, PolicyError> {
    let done = sqlx::query(
        "UPDATE break_glass SET closed_at = $1 \
         WHERE tenant_id = $2 AND user_name = $3 AND grant_id = $4 AND closed_at = 0 AND expires_at > $5",
    )
    .bind(now)
    .bind(tenant.as_str())
    .bind(user)
    .bind(grant_id)
    .bind(now)
    .execute(pool)
    .await
    .map_err(PolicyError::db("closing a break-glass grant", tenant))?
    .rows_affected();
    Ok(done > 0)
}

pub(crate) async fn active(
    pool: &AnyPool,
    tenant: &TenantId,
    user: &str,
    now: i64,
) -> Result<Vec<BreakGlassGrant>, PolicyError> {
    let what = "reading break-glass grants";
    let rows = sqlx::query(
        "SELECT grant_id, study_uid, reason, created_at, expires_at FROM break_glass \
         WHERE tenant_id = $1 AND user_name = $2 AND closed_at = 0 AND expires_at > $3 \
         ORDER BY expires_at DESC",
    )
    .bind(tenant.as_str())
    .bind(user)
    .bind(now)
    .fetch_all(pool)
    .await
    .map_err(PolicyError::db(what, tenant))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let study: String = row.try_get(1).map_err(PolicyError::db(what, tenant))?;
        let scope = if study.is_empty() {
            BreakGlassScope::Tenant
        } else {
            match Uid::parse(&study) {
                Ok(uid) => BreakGlassScope::Study(uid),
                // not written by us: ignore rather than widen it to the tenant
                Err(_) => continue,
            }
        };
        out.push(BreakGlassGrant {
            id: row.try_get(0).map_err(PolicyError::db(what, tenant))?,
            tenant: tenant.clone(),
            user: user.to_owned(),
            scope,
            reason: row.try_get(2).map_err(PolicyError::db(what, tenant))?,
            created_at: row.try_get(3).map_err(PolicyError::db(what, tenant))?,
            expires_at: row.try_get(4).map_err(PolicyError::db(what, tenant))?,
        });
    }
    Ok(out)
}
