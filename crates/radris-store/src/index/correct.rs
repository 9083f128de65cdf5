//! Corrections of the patient and accession an archived study is filed under, as the RIS
//! makes them: reconciliation of an unmatched study with its order (IHE IOCM-style) and the
//! merge of a duplicate patient record (IHE PIR). The index (columns and the stored DICOM
//! JSON headers of the study, its series and instances) takes the corrected values; the
//! stored objects stay byte-identical as received, and the counters of both patients are
//! recomputed in the same transaction.

use radris_core::TenantId;
use serde_json::{Value, json};
use sqlx::Row;

use super::Index;
use super::write::recount_patients;
use crate::StoreError;

/// The patient a study is filed under after a correction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientIdentity {
    pub patient_id: String,
    pub issuer: String,
    /// DICOM PN (`FAMILY^GIVEN`).
    pub name: String,
    pub birth_date: String,
    pub sex: String,
}

/// Set `tag` of a DICOM JSON object to one string value (or remove it when empty).
fn set_value(header: &mut Value, tag: &str, vr: &str, value: &str) {
    let Some(obj) = header.as_object_mut() else {
        return;
    };
    if value.is_empty() {
        obj.insert(tag.to_owned(), json!({ "vr": vr }));
    } else if vr == "PN" {
        obj.insert(
            tag.to_owned(),
            json!({ "vr": vr, "Value": [{ "Alphabetic": value }] }),
        );
    } else {
        obj.insert(tag.to_owned(), json!({ "vr": vr, "Value": [value] }));
    }
}

fn corrected(header: &str, who: &PatientIdentity, accession: Option<&str>) -> String {
    let Ok(mut v) = serde_json::from_str::<Value>(header) else {
        return header.to_owned();
    };
    set_value(&mut v, "00100020", "LO", &who.patient_id);
    set_value(&mut v, "00100021", "LO", &who.issuer);
    set_value(&mut v, "00100010", "PN", &who.name);
    set_value(&mut v, "00100030", "DA", &who.birth_date);
    set_value(&mut v, "00100040", "CS", &who.sex);
    if let Some(acc) = accession {
        set_value(&mut v, "00080050", "SH", acc);
    }
    v.to_string()
}

impl Index {
    /// File a study under `who` (and, when given, `accession`). Returns false when the
    /// tenant has no such study (nothing changed).
    pub async fn correct_study(
        &self,
        tenant: &TenantId,
        study_uid: &str,
        who: &PatientIdentity,
        accession: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(|e| StoreError::db("acquire", e))?;
        let mut tx = self.begin_write(&mut conn).await?;
        let moved = correct_in(&mut tx, tenant, &[study_uid.to_owned()], who, accession).await?;
        tx.commit()
            .await
            .map_err(|e| StoreError::db("commit correction", e))?;
        Ok(moved > 0)
    }

    /// Move every study filed under `from_patient_id` to `who` (a merge of a duplicate
    /// patient record). Returns how many studies moved.
    pub async fn move_patient_studies(
        &self,
        tenant: &TenantId,
        from_patient_id: &str,
        who: &PatientIdentity,
    ) -> Result<u64, StoreError> {
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(|e| StoreError::db("acquire", e))?;
        let mut tx = self.begin_write(&mut conn).await?;
        let studies: Vec<String> =
            sqlx::query("SELECT study_uid FROM studies WHERE tenant_id = $1 AND patient_id = $2")
                .bind(tenant.as_str())
                .bind(from_patient_id)
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| StoreError::db("studies of patient", e))?
                .iter()
                .map(|r| r.try_get::<String, _>(0))
                .collect::<Result<_, _>>()
                .map_err(|e| StoreError::db("studies of patient", e))?;
        let moved = correct_in(&mut tx, tenant, &studies, who, None).await?;
        tx.commit()
            .await
            .map_err(|e| StoreError::db("commit merge", e))?;
        Ok(moved)
    }
}

async fn correct_in(
    conn: &mut sqlx::AnyConnection,
    tenant: &TenantId,
    studies: &[String],
    who: &PatientIdentity,
    accession: Option<&str>,
) -> Result<u64, StoreError> {
    let t = tenant.as_str();
    let db = |what: &'static str| move |e| StoreError::db(what, e);
    let mut touched_patients: Vec<String> = vec![who.patient_id.clone()];
    let mut moved = 0;
    for study in studies {
        let Some(row) = sqlx::query(
            "SELECT patient_id, header_json FROM studies WHERE tenant_id = $1 AND study_uid = $2",
        )
        .bind(t)
        .bind(study.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("study to correct"))?
        else {
            continue;
        };
        let old_patient: String = row.try_get(0).map_err(db("study to correct"))?;
        let header: String = row.try_get(1).map_err(db("study to correct"))?;
        if !touched_patients.contains(&old_patient) {
            touched_patients.push(old_patient.clone());
        }
        // the target patient row exists before studies point at it
        let patient_header = corrected(&header, who, None);
        sqlx::query(
            "INSERT INTO patients (tenant_id, patient_id, issuer, patient_name, patient_name_norm, birth_date, sex, \
             num_studies, num_series, num_instances, header_json) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, 0, $8) \
             ON CONFLICT (tenant_id, patient_id) DO UPDATE SET issuer = $3, patient_name = $4, \
             patient_name_norm = $5, birth_date = $6, sex = $7",
        )
        .bind(t)
        .bind(who.patient_id.as_str())
        .bind(who.issuer.as_str())
        .bind(who.name.as_str())
        .bind(who.name.trim().to_uppercase())
        .bind(who.birth_date.as_str())
        .bind(who.sex.as_str())
        .bind(patient_header)
        .execute(&mut *conn)
        .await
        .map_err(db("target patient"))?;
        let new_accession: Option<String> = accession.map(str::to_owned);
        sqlx::query(
            "UPDATE studies SET patient_id = $1, accession = COALESCE($2, accession), header_json = $3 \
             WHERE tenant_id = $4 AND study_uid = $5",
        )
        .bind(who.patient_id.as_str())
        .bind(new_accession)
        .bind(corrected(&header, who, accession))
        .bind(t)
        .bind(study.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db("correct study"))?;
        for table in ["series", "instances"] {
            let key = if table == "series" {
                "series_uid"
            } else {
                "sop_uid"
            };
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {key}, header_json FROM {table} WHERE tenant_id = $1 AND study_uid = $2"
            )))
            .bind(t)
            .bind(study.as_str())
            .fetch_all(&mut *conn)
            .await
            .map_err(db("headers to correct"))?;
            for r in rows {
                let uid: String = r.try_get(0).map_err(db("headers to correct"))?;
                let h: String = r.try_get(1).map_err(db("headers to correct"))?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE {table} SET header_json = $1 WHERE tenant_id = $2 AND {key} = $3"
                )))
                .bind(corrected(&h, who, accession))
                .bind(t)
                .bind(uid)
                .execute(&mut *conn)
                .await
                .map_err(db("correct header"))?;
            }
        }
        moved += 1;
    }
    recount_patients(conn, tenant, touched_patients.iter()).await?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_take_the_corrected_identity() {
        let h = r#"{"00100020":{"vr":"LO","Value":["OLD"]},"00100010":{"vr":"PN","Value":[{"Alphabetic":"OLD^NAME"}]},"00080050":{"vr":"SH","Value":["A1"]},"0020000D":{"vr":"UI","Value":["1.2"]}}"#;
        let who = PatientIdentity {
            patient_id: "NEW".into(),
            issuer: "HOSP".into(),
            name: "DOE^JANE".into(),
            birth_date: "19800101".into(),
            sex: "F".into(),
        };
        let v: Value = serde_json::from_str(&corrected(h, &who, Some("ACC9"))).unwrap();
        assert_eq!(v["00100020"]["Value"][0], "NEW");
        assert_eq!(v["00100021"]["Value"][0], "HOSP");
        assert_eq!(v["00100010"]["Value"][0]["Alphabetic"], "DOE^JANE");
        assert_eq!(v["00080050"]["Value"][0], "ACC9");
        assert_eq!(v["0020000D"]["Value"][0], "1.2");
        // without an accession the old one stays
        let v: Value = serde_json::from_str(&corrected(h, &who, None)).unwrap();
        assert_eq!(v["00080050"]["Value"][0], "A1");
    }
}
