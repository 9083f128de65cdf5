//! Legal holds and the lookups behind subject access and erasure (GDPR articles 15 and 17):
//! a patient's studies, the patient an entity belongs to, and the hold that blocks deletion.

use radris_core::TenantId;
use sqlx::Row;

use super::{DeleteLevel, Index, now_millis};
use crate::StoreError;

/// A legal hold on a patient's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegalHold {
    pub patient_id: String,
    pub reason: String,
    pub placed_by: String,
    pub placed_at: i64,
}

impl Index {
    /// Put a patient's data under legal hold (or update the reason of an existing hold).
    pub async fn place_hold(
        &self,
        tenant: &TenantId,
        patient_id: &str,
        reason: &str,
        by: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO legal_holds (tenant_id, patient_id, reason, placed_by, placed_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant_id, patient_id) DO UPDATE SET reason = excluded.reason, placed_by = excluded.placed_by, placed_at = excluded.placed_at",
        )
        .bind(tenant.as_str())
        .bind(patient_id)
        .bind(reason)
        .bind(by)
        .bind(now_millis())
        .execute(&self.pool)
        .await
        .map_err(|e| StoreError::db("placing a legal hold", e))?;
        Ok(())
    }

    /// Lift a hold; returns whether there was one.
    pub async fn lift_hold(&self, tenant: &TenantId, patient_id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM legal_holds WHERE tenant_id = $1 AND patient_id = $2")
            .bind(tenant.as_str())
            .bind(patient_id)
            .execute(&self.pool)
            .await
            .map_err(|e| StoreError::db("lifting a legal hold", e))?;
        Ok(r.rows_affected() > 0)
    }

    /// The hold on a patient, if any.
    pub async fn hold_of(
        &self,
        tenant: &TenantId,
        patient_id: &str,
    ) -> Result<Option<LegalHold>, StoreError> {
        let row = sqlx::query(
            "SELECT patient_id, reason, placed_by, placed_at FROM legal_holds WHERE tenant_id = $1 AND patient_id = $2",
        )
        .bind(tenant.as_str())
        .bind(patient_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::db("reading a legal hold", e))?;
        row.map(|r| {
            let e = |e| StoreError::db("reading a legal hold", e);
            Ok(LegalHold {
                patient_id: r.try_get("patient_id").map_err(e)?,
                reason: r.try_get("reason").map_err(e)?,
                placed_by: r.try_get("placed_by").map_err(e)?,
                placed_at: r.try_get("placed_at").map_err(e)?,
            })
        })
        .transpose()
    }

    /// The Study Instance UIDs of a patient.
    pub async fn studies_of_patient(
        &self,
        tenant: &TenantId,
        patient_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT study_uid FROM studies WHERE tenant_id = $1 AND patient_id = $2 ORDER BY study_uid",
        )
        .bind(tenant.as_str())
        .bind(patient_id)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::db("listing a patient's studies", e))?;
        rows.iter()
            .map(|r| {
                r.try_get::<String, _>("study_uid")
                    .map_err(|e| StoreError::db("listing a patient's studies", e))
            })
            .collect()
    }

    /// The patient a study, series or instance belongs to.
    pub async fn patient_of(
        &self,
        tenant: &TenantId,
        level: DeleteLevel,
        uid: &str,
    ) -> Result<Option<String>, StoreError> {
        let sql = match level {
            DeleteLevel::Study => {
                "SELECT patient_id FROM studies WHERE tenant_id = $1 AND study_uid = $2"
            }
            DeleteLevel::Series => {
                "SELECT st.patient_id FROM series se JOIN studies st ON st.tenant_id = se.tenant_id AND st.study_uid = se.study_uid WHERE se.tenant_id = $1 AND se.series_uid = $2"
            }
            DeleteLevel::Instance => {
                "SELECT st.patient_id FROM instances i JOIN studies st ON st.tenant_id = i.tenant_id AND st.study_uid = i.study_uid WHERE i.tenant_id = $1 AND i.sop_uid = $2"
            }
        };
        let row = sqlx::query(sql)
            .bind(tenant.as_str())
            .bind(uid)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| StoreError::db("finding the patient of an entity", e))?;
        row.map(|r| {
            r.try_get::<String, _>(0)
                .map_err(|e| StoreError::db("finding the patient of an entity", e))
        })
        .transpose()
    }
}
