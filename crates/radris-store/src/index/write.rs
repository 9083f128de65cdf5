//! The write path: insert an instance and count up its series, study and patient (upserts
//! with `RETURNING`), or remove instances and recompute what they leave behind.

use std::collections::HashMap;

use dicom_core::VR;
use radris_core::TenantId;
use radris_core::config::DuplicatePolicy;
use radris_dicom::query::normalise;
use sqlx::{AnyConnection, Row};

use super::sql::like_escape;
use super::{InsertOp, InsertOutcome, now_millis};
use crate::StoreError;

pub(super) async fn insert_one(
    conn: &mut AnyConnection,
    op: &InsertOp,
) -> Result<InsertOutcome, StoreError> {
    let mut outcome = InsertOutcome::Inserted;
    if !insert_instance_row(conn, op).await? {
        let t = op.tenant.as_str();
        let sop = op.attrs.instance.sop_instance_uid.as_str();
        match op.policy {
            DuplicatePolicy::KeepFirst => return Ok(InsertOutcome::KeptExisting),
            DuplicatePolicy::Reject => return Err(StoreError::Duplicate(sop.to_owned())),
            DuplicatePolicy::Overwrite => {
                let row = sqlx::query(
                    "SELECT blob_path, series_uid, study_uid FROM instances WHERE tenant_id = $1 AND sop_uid = $2",
                )
                .bind(t)
                .bind(sop)
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| StoreError::db("duplicate row", e))?;
                let g = |i| {
                    row.try_get::<String, _>(i)
                        .map_err(|e| StoreError::db("duplicate row", e))
                };
                let (old, se, st) = (g(0)?, g(1)?, g(2)?);
                sqlx::query("DELETE FROM instances WHERE tenant_id = $1 AND sop_uid = $2")
                    .bind(t)
                    .bind(sop)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| StoreError::db("overwrite", e))?;
                recompute(conn, &op.tenant, &[se], &[st]).await?;
                if !insert_instance_row(conn, op).await? {
                    return Err(StoreError::Database(
                        "overwrite: instance row still present".into(),
                    ));
                }
                outcome = InsertOutcome::Replaced { old_blob_path: old };
            }
        }
    }
    upsert_parents(conn, op).await?;
    Ok(outcome)
}

/// Insert the instance row; `false` when the SOP Instance UID is already stored.
async fn insert_instance_row(conn: &mut AnyConnection, op: &InsertOp) -> Result<bool, StoreError> {
    let a = &op.attrs;
    let inserted = sqlx::query(
        "INSERT INTO instances (tenant_id, sop_uid, series_uid, study_uid, sop_class_uid, instance_number, \
         transfer_syntax, blob_id, blob_path, size_bytes, sha256, source_ae, received_at, header_json) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT (tenant_id, sop_uid) DO NOTHING",
    )
    .bind(op.tenant.as_str())
    .bind(a.instance.sop_instance_uid.as_str())
    .bind(a.series.series_uid.as_str())
    .bind(a.study.study_uid.as_str())
    .bind(a.instance.sop_class_uid.as_str())
    .bind(a.instance.number.as_str())
    .bind(op.transfer_syntax.as_str())
    .bind(op.blob_id.as_str())
    .bind(op.blob_path.as_str())
    .bind(op.size_bytes as i64)
    .bind(op.sha256.as_str())
    .bind(op.source_ae.as_str())
    .bind(now_millis())
    .bind(op.header_json.as_str())
    .execute(&mut *conn)
    .await
    .map_err(|e| StoreError::db("insert instance", e))?
    .rows_affected();
    Ok(inserted == 1)
}

/// Create or count up the series, study and patient of a newly inserted instance: three
/// upserts whose `RETURNING` tells whether the series and study are new.
async fn upsert_parents(conn: &mut AnyConnection, op: &InsertOp) -> Result<(), StoreError> {
    let t = op.tenant.as_str();
    let a = &op.attrs;
    let now = now_millis();
    let series_count: i64 = sqlx::query(
        "INSERT INTO series (tenant_id, series_uid, study_uid, modality, series_number, description, body_part, \
         series_date, num_instances, header_json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9) \
         ON CONFLICT (tenant_id, series_uid) DO UPDATE SET num_instances = series.num_instances + 1 \
         RETURNING num_instances",
    )
    .bind(t)
    .bind(a.series.series_uid.as_str())
    .bind(a.study.study_uid.as_str())
    .bind(a.series.modality.as_str())
    .bind(a.series.number.as_str())
    .bind(a.series.description.as_str())
    .bind(a.series.body_part.as_str())
    .bind(a.series.date.as_str())
    .bind(op.header_json.as_str())
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| StoreError::db("upsert series", e))?
    .try_get(0)
    .map_err(|e| StoreError::db("upsert series", e))?;
    let new_series: i64 = (series_count == 1).into();
    let modality = &a.series.modality;
    let (mods_new, mods_pattern) = if modality.is_empty() {
        ("|".to_owned(), "%".to_owned())
    } else {
        (
            format!("|{modality}|"),
            format!("%|{}|%", like_escape(modality)),
        )
    };
    let study_count: i64 = sqlx::query(
        "INSERT INTO studies (tenant_id, study_uid, patient_id, study_date, study_time, accession, study_id, \
         description, referring_norm, modalities, num_series, num_instances, header_json, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, 1, $11, $12, $12) \
         ON CONFLICT (tenant_id, study_uid) DO UPDATE SET \
           num_instances = studies.num_instances + 1, \
           num_series = studies.num_series + $13, \
           updated_at = $12, \
           modalities = CASE WHEN studies.modalities LIKE $14 ESCAPE '!' THEN studies.modalities \
                             ELSE studies.modalities || $15 || '|' END \
         RETURNING num_instances",
    )
    .bind(t)
    .bind(a.study.study_uid.as_str())
    .bind(a.patient.patient_id.as_str())
    .bind(a.study.date.as_str())
    .bind(a.study.time.as_str())
    .bind(a.study.accession.as_str())
    .bind(a.study.study_id.as_str())
    .bind(a.study.description.as_str())
    .bind(normalise(VR::PN, &a.study.referring_physician))
    .bind(mods_new)
    .bind(op.header_json.as_str())
    .bind(now)
    .bind(new_series)
    .bind(mods_pattern)
    .bind(modality.as_str())
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| StoreError::db("upsert study", e))?
    .try_get(0)
    .map_err(|e| StoreError::db("upsert study", e))?;
    let new_study: i64 = (study_count == 1).into();
    // counters go to the patient the study belongs to (the first instance's Patient ID)
    sqlx::query(
        "INSERT INTO patients (tenant_id, patient_id, issuer, patient_name, patient_name_norm, birth_date, sex, \
         num_studies, num_series, num_instances, header_json) VALUES ($1, \
         COALESCE((SELECT patient_id FROM studies WHERE tenant_id = $1 AND study_uid = $11), $2), \
         $3, $4, $5, $6, $7, 1, 1, 1, $8) \
         ON CONFLICT (tenant_id, patient_id) DO UPDATE SET \
           num_studies = patients.num_studies + $9, \
           num_series = patients.num_series + $10, \
           num_instances = patients.num_instances + 1",
    )
    .bind(t)
    .bind(a.patient.patient_id.as_str())
    .bind(a.patient.issuer.as_str())
    .bind(a.patient.name.as_str())
    .bind(normalise(VR::PN, &a.patient.name))
    .bind(a.patient.birth_date.as_str())
    .bind(a.patient.sex.as_str())
    .bind(op.header_json.as_str())
    .bind(new_study)
    .bind(new_series)
    .bind(a.study.study_uid.as_str())
    .execute(&mut *conn)
    .await
    .map_err(|e| StoreError::db("upsert patient", e))?;
    Ok(())
}

/// Recompute counters after instances were removed; drop entities left empty.
pub(super) async fn recompute(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    series: &[String],
    studies: &[String],
) -> Result<(), StoreError> {
    let t = tenant.as_str();
    let db = |what: &'static str| move |e| StoreError::db(what, e);
    for se in series {
        sqlx::query(
            "UPDATE series SET num_instances = (SELECT COUNT(*) FROM instances WHERE tenant_id = $1 AND series_uid = $2) \
             WHERE tenant_id = $1 AND series_uid = $2",
        )
        .bind(t)
        .bind(se.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db("recount series"))?;
        sqlx::query(
            "DELETE FROM series WHERE tenant_id = $1 AND series_uid = $2 AND num_instances = 0",
        )
        .bind(t)
        .bind(se.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db("drop empty series"))?;
    }
    let mut patients: HashMap<String, ()> = HashMap::new();
    for st in studies {
        if let Some(row) =
            sqlx::query("SELECT patient_id FROM studies WHERE tenant_id = $1 AND study_uid = $2")
                .bind(t)
                .bind(st.as_str())
                .fetch_optional(&mut *conn)
                .await
                .map_err(db("study patient"))?
        {
            patients.insert(row.try_get(0).map_err(db("study patient"))?, ());
        }
        let mods = sqlx::query("SELECT DISTINCT modality FROM series WHERE tenant_id = $1 AND study_uid = $2 ORDER BY modality")
            .bind(t)
            .bind(st.as_str())
            .fetch_all(&mut *conn)
            .await
            .map_err(db("study modalities"))?;
        let mut joined = String::from("|");
        for m in mods {
            let m: String = m.try_get(0).map_err(db("study modalities"))?;
            if !m.is_empty() {
                joined.push_str(&m);
                joined.push('|');
            }
        }
        sqlx::query(
            "UPDATE studies SET modalities = $3, \
             num_series = (SELECT COUNT(*) FROM series WHERE tenant_id = $1 AND study_uid = $2), \
             num_instances = (SELECT COUNT(*) FROM instances WHERE tenant_id = $1 AND study_uid = $2) \
             WHERE tenant_id = $1 AND study_uid = $2",
        )
        .bind(t)
        .bind(st.as_str())
        .bind(joined)
        .execute(&mut *conn)
        .await
        .map_err(db("recount study"))?;
        sqlx::query(
            "DELETE FROM studies WHERE tenant_id = $1 AND study_uid = $2 AND num_instances = 0",
        )
        .bind(t)
        .bind(st.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db("drop empty study"))?;
    }
    recount_patients(conn, tenant, patients.keys()).await
}

/// Recount the studies, series and instances of these patients; drop those left without a
/// study.
pub(super) async fn recount_patients<'a>(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    patients: impl IntoIterator<Item = &'a String>,
) -> Result<(), StoreError> {
    let t = tenant.as_str();
    let db = |what: &'static str| move |e| StoreError::db(what, e);
    for p in patients {
        sqlx::query(
            "UPDATE patients SET \
             num_studies = (SELECT COUNT(*) FROM studies WHERE tenant_id = $1 AND patient_id = $2), \
             num_series = (SELECT COUNT(*) FROM series se JOIN studies st ON st.tenant_id = se.tenant_id AND st.study_uid = se.study_uid WHERE st.tenant_id = $1 AND st.patient_id = $2), \
             num_instances = (SELECT COUNT(*) FROM instances i JOIN studies st ON st.tenant_id = i.tenant_id AND st.study_uid = i.study_uid WHERE st.tenant_id = $1 AND st.patient_id = $2) \
             WHERE tenant_id = $1 AND patient_id = $2",
        )
        .bind(t)
        .bind(p.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db("recount patient"))?;
        sqlx::query(
            "DELETE FROM patients WHERE tenant_id = $1 AND patient_id = $2 AND num_studies = 0",
        )
        .bind(t)
        .bind(p.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db("drop empty patient"))?;
    }
    Ok(())
}
