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
                // the replaced file goes after the commit; queued with it (as a delete's are)
                queue_removal(conn, &old).await?;
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

/// Queue a blob file for removal in the transaction that drops its row: the file goes after
/// the commit ([`super::Index::removals_done`]), or at the next start after a crash.
pub(super) async fn queue_removal(
    conn: &mut AnyConnection,
    blob_path: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO blob_removals (blob_path, queued_at) VALUES ($1, $2) \
         ON CONFLICT (blob_path) DO NOTHING",
    )
    .bind(blob_path)
    .bind(now_millis())
    .execute(&mut *conn)
    .await
    .map_err(|e| StoreError::db("queue blob removal", e))?;
    Ok(())
}

/// A value bound to one of the insert path's statements. The statements and their values
/// are built here once and run by either driver: sqlx (both backends) or the SQLite direct
/// writer ([`super::direct`]).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Param<'a> {
    Str(&'a str),
    Owned(String),
    Int(i64),
}

impl Param<'_> {
    fn bind<'q>(
        &'q self,
        q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        match self {
            Param::Str(s) => q.bind(*s),
            Param::Owned(s) => q.bind(s.as_str()),
            Param::Int(i) => q.bind(*i),
        }
    }
}

/// `sql` with `params` bound in order ($1, $2, ...).
fn query<'q>(
    sql: &'static str,
    params: &'q [Param<'q>],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    params.iter().fold(sqlx::query(sql), |q, p| p.bind(q))
}

pub(super) const SET_SHA256: &str =
    "UPDATE instances SET sha256 = $3 WHERE tenant_id = $1 AND sop_uid = $2";

pub(super) fn sha256_params<'a>(op: &'a InsertOp, sha256: &'a str) -> [Param<'a>; 3] {
    [
        Param::Str(op.tenant.as_str()),
        Param::Str(op.attrs.instance.sop_instance_uid.as_str()),
        Param::Str(sha256),
    ]
}

pub(super) const INSERT_INSTANCE: &str = "INSERT INTO instances (tenant_id, sop_uid, series_uid, study_uid, sop_class_uid, instance_number, \
     transfer_syntax, blob_id, blob_path, size_bytes, sha256, source_ae, received_at, header_json) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
     ON CONFLICT (tenant_id, sop_uid) DO NOTHING";

pub(super) fn instance_params(op: &InsertOp) -> [Param<'_>; 14] {
    let a = &op.attrs;
    [
        Param::Str(op.tenant.as_str()),
        Param::Str(a.instance.sop_instance_uid.as_str()),
        Param::Str(a.series.series_uid.as_str()),
        Param::Str(a.study.study_uid.as_str()),
        Param::Str(a.instance.sop_class_uid.as_str()),
        Param::Str(a.instance.number.as_str()),
        Param::Str(op.transfer_syntax.as_str()),
        Param::Str(op.blob_id.as_str()),
        Param::Str(op.blob_path.as_str()),
        Param::Int(op.size_bytes as i64),
        Param::Str(op.sha256.as_str()),
        Param::Str(op.source_ae.as_str()),
        Param::Int(now_millis()),
        Param::Str(op.header_json.as_str()),
    ]
}

/// Create or count up the series of a new instance; returns its instance count (1: new).
pub(super) const UPSERT_SERIES: &str = "INSERT INTO series (tenant_id, series_uid, study_uid, modality, series_number, description, body_part, \
     series_date, num_instances, header_json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9) \
     ON CONFLICT (tenant_id, series_uid) DO UPDATE SET num_instances = series.num_instances + 1 \
     RETURNING num_instances";

pub(super) fn series_params(op: &InsertOp) -> [Param<'_>; 9] {
    let a = &op.attrs;
    [
        Param::Str(op.tenant.as_str()),
        Param::Str(a.series.series_uid.as_str()),
        Param::Str(a.study.study_uid.as_str()),
        Param::Str(a.series.modality.as_str()),
        Param::Str(a.series.number.as_str()),
        Param::Str(a.series.description.as_str()),
        Param::Str(a.series.body_part.as_str()),
        Param::Str(a.series.date.as_str()),
        Param::Str(op.header_json.as_str()),
    ]
}

/// Create or count up the study of a new instance (and add its modality to
/// ModalitiesInStudy); returns its instance count (1: new).
pub(super) const UPSERT_STUDY: &str = "INSERT INTO studies (tenant_id, study_uid, patient_id, study_date, study_time, accession, study_id, \
     description, referring_norm, modalities, num_series, num_instances, header_json, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, 1, $11, $12, $12) \
     ON CONFLICT (tenant_id, study_uid) DO UPDATE SET \
       num_instances = studies.num_instances + 1, \
       num_series = studies.num_series + $13, \
       updated_at = $12, \
       modalities = CASE WHEN studies.modalities LIKE $14 ESCAPE '!' THEN studies.modalities \
                         ELSE studies.modalities || $15 || '|' END \
     RETURNING num_instances";

pub(super) fn study_params(op: &InsertOp, new_series: bool) -> [Param<'_>; 15] {
    let a = &op.attrs;
    let modality = &a.series.modality;
    let (mods_new, mods_pattern) = if modality.is_empty() {
        ("|".to_owned(), "%".to_owned())
    } else {
        (
            format!("|{modality}|"),
            format!("%|{}|%", like_escape(modality)),
        )
    };
    [
        Param::Str(op.tenant.as_str()),
        Param::Str(a.study.study_uid.as_str()),
        Param::Str(a.patient.patient_id.as_str()),
        Param::Str(a.study.date.as_str()),
        Param::Str(a.study.time.as_str()),
        Param::Str(a.study.accession.as_str()),
        Param::Str(a.study.study_id.as_str()),
        Param::Str(a.study.description.as_str()),
        Param::Owned(normalise(VR::PN, &a.study.referring_physician)),
        Param::Owned(mods_new),
        Param::Str(op.header_json.as_str()),
        Param::Int(now_millis()),
        Param::Int(new_series.into()),
        Param::Owned(mods_pattern),
        Param::Str(modality.as_str()),
    ]
}

/// Create or count up the patient the study belongs to (the first instance's Patient ID).
pub(super) const UPSERT_PATIENT: &str = "INSERT INTO patients (tenant_id, patient_id, issuer, patient_name, patient_name_norm, birth_date, sex, \
     num_studies, num_series, num_instances, header_json) VALUES ($1, \
     COALESCE((SELECT patient_id FROM studies WHERE tenant_id = $1 AND study_uid = $11), $2), \
     $3, $4, $5, $6, $7, 1, 1, 1, $8) \
     ON CONFLICT (tenant_id, patient_id) DO UPDATE SET \
       num_studies = patients.num_studies + $9, \
       num_series = patients.num_series + $10, \
       num_instances = patients.num_instances + 1";

pub(super) fn patient_params(op: &InsertOp, new_study: bool, new_series: bool) -> [Param<'_>; 11] {
    let a = &op.attrs;
    [
        Param::Str(op.tenant.as_str()),
        Param::Str(a.patient.patient_id.as_str()),
        Param::Str(a.patient.issuer.as_str()),
        Param::Str(a.patient.name.as_str()),
        Param::Owned(normalise(VR::PN, &a.patient.name)),
        Param::Str(a.patient.birth_date.as_str()),
        Param::Str(a.patient.sex.as_str()),
        Param::Str(op.header_json.as_str()),
        Param::Int(new_study.into()),
        Param::Int(new_series.into()),
        Param::Str(a.study.study_uid.as_str()),
    ]
}

/// Set the SHA-256 of an instance row written before its hash was known.
pub(super) async fn set_sha256(
    conn: &mut AnyConnection,
    op: &InsertOp,
    sha256: &str,
) -> Result<(), StoreError> {
    query(SET_SHA256, &sha256_params(op, sha256))
        .execute(&mut *conn)
        .await
        .map_err(|e| StoreError::db("set sha256", e))?;
    Ok(())
}

/// Insert the instance row; `false` when the SOP Instance UID is already stored.
async fn insert_instance_row(conn: &mut AnyConnection, op: &InsertOp) -> Result<bool, StoreError> {
    let inserted = query(INSERT_INSTANCE, &instance_params(op))
        .execute(&mut *conn)
        .await
        .map_err(|e| StoreError::db("insert instance", e))?
        .rows_affected();
    Ok(inserted == 1)
}

/// Create or count up the series, study and patient of a newly inserted instance: three
/// upserts whose `RETURNING` tells whether the series and study are new.
async fn upsert_parents(conn: &mut AnyConnection, op: &InsertOp) -> Result<(), StoreError> {
    let count = |what: &'static str| {
        move |row: Result<sqlx::any::AnyRow, sqlx::Error>| -> Result<i64, StoreError> {
            row.and_then(|r| r.try_get(0))
                .map_err(|e| StoreError::db(what, e))
        }
    };
    let series = query(UPSERT_SERIES, &series_params(op))
        .fetch_one(&mut *conn)
        .await;
    let new_series = count("upsert series")(series)? == 1;
    let study = query(UPSERT_STUDY, &study_params(op, new_series))
        .fetch_one(&mut *conn)
        .await;
    let new_study = count("upsert study")(study)? == 1;
    query(UPSERT_PATIENT, &patient_params(op, new_study, new_series))
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
