//! Annotation documents: one JSON document per (tenant, study, user) holding what the viewer
//! saved for that study (measurements, key images). The index does not look inside the
//! document; it keeps it with a version for optimistic concurrency: a writer names the
//! version it last read, and a write based on an older version is refused
//! ([`StoreError::Conflict`]), so two browser tabs cannot silently overwrite each other.
//!
//! A document exists only beside its study: [`Index::put_annotations`] refuses a study the
//! tenant does not hold, and deleting a study (or erasing its patient) removes its documents
//! in the same transaction ([`Index::delete`]).

use radris_core::TenantId;
use sqlx::{AnyConnection, Row};

use super::{Backend, Index, now_millis};
use crate::StoreError;

/// A stored annotation document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationDoc {
    /// The document as stored (JSON text).
    pub document: String,
    /// 1 for the first write, +1 for every write after.
    pub version: i64,
    /// Milliseconds since the Unix epoch of the last write.
    pub updated_at: i64,
}

impl Index {
    /// The document a user saved for a study, if any.
    pub async fn annotations(
        &self,
        tenant: &TenantId,
        study_uid: &str,
        user: &str,
    ) -> Result<Option<AnnotationDoc>, StoreError> {
        let row = sqlx::query(
            "SELECT document, version, updated_at FROM annotations \
             WHERE tenant_id = $1 AND study_uid = $2 AND user_name = $3",
        )
        .bind(tenant.as_str())
        .bind(study_uid)
        .bind(user)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("reading annotations", e))?;
        row.map(|r| {
            let e = |e| StoreError::db("reading annotations", e);
            Ok(AnnotationDoc {
                document: r.try_get(0).map_err(e)?,
                version: r.try_get(1).map_err(e)?,
                updated_at: r.try_get(2).map_err(e)?,
            })
        })
        .transpose()
    }

    /// Every user's document for a study, by user name (the subject access export).
    pub async fn annotations_of_study(
        &self,
        tenant: &TenantId,
        study_uid: &str,
    ) -> Result<Vec<(String, AnnotationDoc)>, StoreError> {
        let rows = sqlx::query(
            "SELECT user_name, document, version, updated_at FROM annotations \
             WHERE tenant_id = $1 AND study_uid = $2 ORDER BY user_name",
        )
        .bind(tenant.as_str())
        .bind(study_uid)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("reading annotations", e))?;
        rows.iter()
            .map(|r| {
                let e = |e| StoreError::db("reading annotations", e);
                Ok((
                    r.try_get(0).map_err(e)?,
                    AnnotationDoc {
                        document: r.try_get(1).map_err(e)?,
                        version: r.try_get(2).map_err(e)?,
                        updated_at: r.try_get(3).map_err(e)?,
                    },
                ))
            })
            .collect()
    }

    /// Save a user's document for a study. `expected`: the version the writer last read,
    /// `None` when it read none (the document must not exist yet). Returns the new version.
    ///
    /// Errors: [`StoreError::NotFound`] when the tenant holds no such study,
    /// [`StoreError::Conflict`] when the stored version is not `expected` (nothing changes).
    pub async fn put_annotations(
        &self,
        tenant: &TenantId,
        study_uid: &str,
        user: &str,
        document: &str,
        expected: Option<i64>,
    ) -> Result<i64, StoreError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| StoreError::db("acquire", e))?;
        let mut tx = self.begin_write(&mut conn).await?;
        // the study must exist, and must not vanish before we commit: on PostgreSQL the row is
        // locked (a concurrent delete waits for us, then removes our document with the study);
        // on SQLite the write transaction already excludes every other writer
        let lock = match self.backend {
            Backend::Postgres => " FOR SHARE",
            Backend::Sqlite => "",
        };
        let study = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT study_uid FROM studies WHERE tenant_id = $1 AND study_uid = $2{lock}"
        )))
        .bind(tenant.as_str())
        .bind(study_uid)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| StoreError::db("annotations: study", e))?;
        if study.is_none() {
            return Err(StoreError::NotFound(format!("study {study_uid}")));
        }
        let now = now_millis();
        let (written, version) = match expected {
            None => {
                let r = sqlx::query(
                    "INSERT INTO annotations (tenant_id, study_uid, user_name, document, version, updated_at) \
                     VALUES ($1, $2, $3, $4, 1, $5) \
                     ON CONFLICT (tenant_id, study_uid, user_name) DO NOTHING",
                )
                .bind(tenant.as_str())
                .bind(study_uid)
                .bind(user)
                .bind(document)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| StoreError::db("saving annotations", e))?;
                (r.rows_affected(), 1)
            }
            Some(v) => {
                let next = v.checked_add(1).ok_or(StoreError::Conflict {
                    expected,
                    current: None,
                })?;
                let r = sqlx::query(
                    "UPDATE annotations SET document = $1, version = $2, updated_at = $3 \
                     WHERE tenant_id = $4 AND study_uid = $5 AND user_name = $6 AND version = $7",
                )
                .bind(document)
                .bind(next)
                .bind(now)
                .bind(tenant.as_str())
                .bind(study_uid)
                .bind(user)
                .bind(v)
                .execute(&mut *tx)
                .await
                .map_err(|e| StoreError::db("saving annotations", e))?;
                (r.rows_affected(), next)
            }
        };
        if written != 1 {
            let current = current_version(&mut tx, tenant, study_uid, user).await?;
            return Err(StoreError::Conflict { expected, current });
        }
        tx.commit()
            .await
            .map_err(|e| StoreError::db("annotations: commit", e))?;
        Ok(version)
    }
}

async fn current_version(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    study_uid: &str,
    user: &str,
) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query(
        "SELECT version FROM annotations WHERE tenant_id = $1 AND study_uid = $2 AND user_name = $3",
    )
    .bind(tenant.as_str())
    .bind(study_uid)
    .bind(user)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| StoreError::db("annotations: version", e))?;
    row.map(|r| {
        r.try_get::<i64, _>(0)
            .map_err(|e| StoreError::db("annotations: version", e))
    })
    .transpose()
}

/// Remove the documents of studies that no longer exist (after a deletion removed their last
/// instance), inside the deleting transaction.
pub(super) async fn drop_orphaned(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    studies: &[String],
) -> Result<(), StoreError> {
    for st in studies {
        sqlx::query(
            "DELETE FROM annotations WHERE tenant_id = $1 AND study_uid = $2 \
             AND NOT EXISTS (SELECT 1 FROM studies WHERE tenant_id = $1 AND study_uid = $2)",
        )
        .bind(tenant.as_str())
        .bind(st.as_str())
        .execute(&mut *conn)
        .await
        .map_err(|e| StoreError::db("delete: annotations", e))?;
    }
    Ok(())
}
