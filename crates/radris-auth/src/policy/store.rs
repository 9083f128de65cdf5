//! The `policies` table (migration 8 of `radris-store`): every version a tenant stored, the
//! highest number in force. Rows are never updated or deleted, so the history stays for audit.

use radris_core::TenantId;
use sqlx::{AnyPool, Row};

use super::{PolicyError, PolicyVersion};

pub(crate) struct StoredPolicies {
    pub tenant: TenantId,
    pub version: i64,
    pub version_info: PolicyVersion,
    /// Empty when `is_default`.
    pub text: String,
    pub is_default: bool,
}

const COLUMNS: &str =
    "p.tenant_id, p.version, p.policy_text, p.is_default, p.updated_at, p.updated_by";

fn row_of(row: &sqlx::any::AnyRow) -> Result<Option<StoredPolicies>, sqlx::Error> {
    let tenant: String = row.try_get(0)?;
    let Ok(tenant) = TenantId::parse(&tenant) else {
        // written by hand into the database: not a tenant any request can carry
        tracing::warn!("policies row with an invalid tenant id ignored");
        return Ok(None);
    };
    let version: i64 = row.try_get(1)?;
    Ok(Some(StoredPolicies {
        tenant,
        version,
        text: row.try_get(2)?,
        is_default: row.try_get::<i64, _>(3)? != 0,
        version_info: PolicyVersion {
            number: version,
            updated_at: row.try_get(4)?,
            updated_by: row.try_get(5)?,
        },
    }))
}

/// The current version of every tenant that ever stored policies.
pub(crate) async fn current_all(pool: &AnyPool) -> Result<Vec<StoredPolicies>, PolicyError> {
    let db = |source| PolicyError::Database {
        what: "loading the policies",
        tenant: "*".into(),
        source,
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM policies p \
         WHERE p.version = (SELECT MAX(q.version) FROM policies q WHERE q.tenant_id = p.tenant_id)"
    )))
    .fetch_all(pool)
    .await
    .map_err(db)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Some(p) = row_of(row).map_err(db)? {
            out.push(p);
        }
    }
    Ok(out)
}

/// The tenant's current version, if it ever stored one.
pub(crate) async fn current(
    pool: &AnyPool,
    tenant: &TenantId,
) -> Result<Option<StoredPolicies>, PolicyError> {
    let what = "reading the policies";
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM policies p WHERE p.tenant_id = $1 ORDER BY p.version DESC LIMIT 1"
    )))
    .bind(tenant.as_str())
    .fetch_optional(pool)
    .await
    .map_err(PolicyError::db(what, tenant))?;
    match row {
        Some(row) => row_of(&row).map_err(PolicyError::db(what, tenant)),
        None => Ok(None),
    }
}

/// Store a new version (the next number, in one statement so that two writers cannot take
/// the same one unseen: the loser violates the primary key and gets
/// [`PolicyError::Conflict`]).
pub(crate) async fn insert(
    pool: &AnyPool,
    tenant: &TenantId,
    text: &str,
    is_default: bool,
    by: &str,
    now: i64,
) -> Result<PolicyVersion, PolicyError> {
    let row = sqlx::query(
        "INSERT INTO policies (tenant_id, version, policy_text, is_default, updated_at, updated_by) \
         SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4, $5 FROM policies WHERE tenant_id = $6 \
         RETURNING version",
    )
    .bind(tenant.as_str())
    .bind(if is_default { "" } else { text })
    .bind(i64::from(is_default))
    .bind(now)
    .bind(by)
    .bind(tenant.as_str())
    .fetch_one(pool)
    .await
    .map_err(|e| {
        if e
            .as_database_error()
            .is_some_and(|d| d.is_unique_violation())
        {
            PolicyError::Conflict {
                tenant: tenant.clone(),
            }
        } else {
            PolicyError::db("storing the policies", tenant)(e)
        }
    })?;
    let number: i64 = row
        .try_get(0)
        .map_err(PolicyError::db("storing the policies", tenant))?;
    Ok(PolicyVersion {
        number,
        updated_at: now,
        updated_by: by.to_owned(),
    })
}
