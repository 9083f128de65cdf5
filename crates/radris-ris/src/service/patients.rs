//! Patients (demographics, identifiers with issuer), merge and link of duplicates (IHE PIR),
//! and the procedure catalogue.

use radris_core::TenantId;
use radris_store::index::PatientIdentity;
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use super::{Actor, Ris, RisError, n, new_id, s};
use crate::model::*;

const PATIENT_SELECT: &str = "SELECT id, patient_id, issuer, name, birth_date, sex, merged_into, created_at FROM ris_patients";

fn patient_row(r: &AnyRow) -> Result<Patient, RisError> {
    let merged = s(r, "merged_into")?;
    Ok(Patient {
        id: s(r, "id")?,
        patient_id: s(r, "patient_id")?,
        issuer: s(r, "issuer")?,
        name: s(r, "name")?,
        birth_date: s(r, "birth_date")?,
        sex: s(r, "sex")?,
        merged_into: (!merged.is_empty()).then_some(merged),
        links: Vec::new(),
        created_at: Time(n(r, "created_at")?),
    })
}

/// Validate a DICOM-ish value: no backslash or control characters, at most `max` characters.
pub(crate) fn check_text(what: &str, v: &str, max: usize) -> Result<String, RisError> {
    let v = v.trim();
    if v.chars().count() > max {
        return Err(RisError::Invalid(format!(
            "{what} is longer than {max} characters"
        )));
    }
    if v.chars().any(|c| c == '\\' || c.is_control()) {
        return Err(RisError::Invalid(format!(
            "{what} must not contain '\\' or control characters"
        )));
    }
    Ok(v.to_owned())
}

fn check_date(v: &str) -> Result<String, RisError> {
    let v = v.trim();
    let ok = v.is_empty()
        || (v.len() == 8
            && v.bytes().all(|b| b.is_ascii_digit())
            && chrono::NaiveDate::parse_from_str(v, "%Y%m%d").is_ok());
    if ok {
        Ok(v.to_owned())
    } else {
        Err(RisError::Invalid(format!(
            "birth_date {v:?} is not a date YYYYMMDD"
        )))
    }
}

fn check_sex(v: &str) -> Result<String, RisError> {
    let v = v.trim().to_ascii_uppercase();
    if matches!(v.as_str(), "" | "M" | "F" | "O") {
        Ok(v)
    } else {
        Err(RisError::Invalid(format!(
            "sex {v:?} must be M, F, O or empty"
        )))
    }
}

pub(crate) async fn patient_in(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    id: &str,
) -> Result<Patient, RisError> {
    let row = super::fetch_by_id(
        conn,
        format!("{PATIENT_SELECT} WHERE tenant_id = $1 AND id = $2"),
        tenant,
        id,
        "patient",
    )
    .await?;
    let mut p = patient_row(&row)?;
    let links = sqlx::query(
        "SELECT b AS other FROM ris_patient_links WHERE tenant_id = $1 AND a = $2 \
         UNION SELECT a AS other FROM ris_patient_links WHERE tenant_id = $1 AND b = $2",
    )
    .bind(tenant.as_str())
    .bind(id)
    .fetch_all(&mut *conn)
    .await
    .map_err(RisError::db("patient links"))?;
    p.links = links
        .iter()
        .map(|r| s(r, "other"))
        .collect::<Result<_, _>>()?;
    Ok(p)
}

fn identity(p: &Patient) -> PatientIdentity {
    PatientIdentity {
        patient_id: p.patient_id.clone(),
        issuer: p.issuer.clone(),
        name: p.name.clone(),
        birth_date: p.birth_date.clone(),
        sex: p.sex.clone(),
    }
}

impl Ris {
    pub async fn create_patient(
        &self,
        tenant: &TenantId,
        new: &NewPatient,
        actor: &Actor,
    ) -> Result<Patient, RisError> {
        let pid = check_text("patient_id", &new.patient_id, 64)?;
        if pid.is_empty() {
            return Err(RisError::Invalid("patient_id is required".into()));
        }
        let issuer = check_text("issuer", &new.issuer, 64)?;
        let name = check_text("name", &new.name, 64 * 5)?;
        if name.is_empty() {
            return Err(RisError::Invalid("name is required (FAMILY^GIVEN)".into()));
        }
        let birth = check_date(&new.birth_date)?;
        let sex = check_sex(&new.sex)?;
        let id = new_id();
        let tenant2 = tenant.clone();
        let actor2 = actor.clone();
        let id2 = id.clone();
        write_tx!(self, |c, fx| {
            let exists = sqlx::query(
                "SELECT id FROM ris_patients WHERE tenant_id = $1 AND patient_id = $2 AND issuer = $3",
            )
            .bind(tenant2.as_str())
            .bind(pid.as_str())
            .bind(issuer.as_str())
            .fetch_optional(&mut *c)
            .await
            .map_err(RisError::db("patient lookup"))?;
            if let Some(r) = exists {
                return Err(RisError::conflict(format!(
                    "patient {pid} (issuer {issuer:?}) exists already as {}",
                    s(&r, "id")?
                )));
            }
            let now = super::now_millis();
            sqlx::query(
                "INSERT INTO ris_patients (tenant_id, id, patient_id, issuer, name, name_norm, birth_date, sex, \
                 merged_into, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '', $9, $9)",
            )
            .bind(tenant2.as_str())
            .bind(id2.as_str())
            .bind(pid.as_str())
            .bind(issuer.as_str())
            .bind(name.as_str())
            .bind(radris_core::person_name_key(&name))
            .bind(birth.as_str())
            .bind(sex.as_str())
            .bind(now)
            .execute(&mut *c)
            .await
            .map_err(RisError::db("insert patient"))?;
            fx.audit(&tenant2, &actor2, "ris.patient.create", format!("patient {id2}"), format!("patient_id={pid} issuer={issuer}"));
            Ok(())
        })
        .await?;
        self.patient(tenant, &id).await
    }

    pub async fn patient(&self, tenant: &TenantId, id: &str) -> Result<Patient, RisError> {
        let mut conn = self.conn().await?;
        patient_in(&mut conn, tenant, id).await
    }

    /// Patients whose name starts with `q` (case-insensitive) or whose patient ID is `q`;
    /// merged-away records are left out.
    pub async fn patients(
        &self,
        tenant: &TenantId,
        q: &str,
        limit: i64,
    ) -> Result<Vec<Patient>, RisError> {
        let mut conn = self.conn().await?;
        let q = q.trim();
        let like = format!("{}%", q.to_uppercase().replace(['%', '_'], ""));
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{PATIENT_SELECT} WHERE tenant_id = $1 AND merged_into = '' AND ($2 = '' OR name_norm LIKE $3 OR patient_id = $2) \
             ORDER BY name_norm, id LIMIT $4"
        )))
        .bind(tenant.as_str())
        .bind(q)
        .bind(like)
        .bind(limit.clamp(1, 500))
        .fetch_all(&mut *conn)
        .await
        .map_err(RisError::db("patients"))?;
        rows.iter().map(patient_row).collect()
    }

    pub async fn change_patient(
        &self,
        tenant: &TenantId,
        id: &str,
        change: &PatientChange,
        actor: &Actor,
    ) -> Result<Patient, RisError> {
        let name = change
            .name
            .as_deref()
            .map(|v| check_text("name", v, 320))
            .transpose()?;
        if name.as_deref() == Some("") {
            return Err(RisError::Invalid("name must not be empty".into()));
        }
        let birth = change.birth_date.as_deref().map(check_date).transpose()?;
        let sex = change.sex.as_deref().map(check_sex).transpose()?;
        let tenant2 = tenant.clone();
        let actor2 = actor.clone();
        write_tx!(self, |c, fx| {
            let before = patient_in(c, &tenant2, id).await?;
            let name = name.unwrap_or(before.name);
            let birth = birth.unwrap_or(before.birth_date);
            let sex = sex.unwrap_or(before.sex);
            sqlx::query(
                "UPDATE ris_patients SET name = $1, name_norm = $2, birth_date = $3, sex = $4, updated_at = $5 \
                 WHERE tenant_id = $6 AND id = $7",
            )
            .bind(name.as_str())
            .bind(radris_core::person_name_key(&name))
            .bind(birth.as_str())
            .bind(sex.as_str())
            .bind(super::now_millis())
            .bind(tenant2.as_str())
            .bind(id)
            .execute(&mut *c)
            .await
            .map_err(RisError::db("update patient"))?;
            fx.audit(&tenant2, &actor2, "ris.patient.update", format!("patient {id}"), String::new());
            Ok(())
        })
        .await?;
        self.patient(tenant, id).await
    }

    /// Merge the duplicate record `dup` into `into` (IHE PIR "merge"): the duplicate's orders
    /// and its archived studies move to `into`; the duplicate stays, marked merged, so its
    /// old identifier still resolves. Returns (target, orders moved, studies moved).
    pub async fn merge_patient(
        &self,
        tenant: &TenantId,
        dup: &str,
        into: &str,
        actor: &Actor,
    ) -> Result<(Patient, u64, u64), RisError> {
        if dup == into {
            return Err(RisError::Invalid(
                "a patient cannot be merged into itself".into(),
            ));
        }
        let (from, target) = {
            let mut conn = self.conn().await?;
            (
                patient_in(&mut conn, tenant, dup).await?,
                patient_in(&mut conn, tenant, into).await?,
            )
        };
        if from.merged_into.is_some() {
            return Err(RisError::conflict(format!(
                "patient {dup} is already merged"
            )));
        }
        if target.merged_into.is_some() {
            return Err(RisError::conflict(format!(
                "patient {into} was itself merged; merge into the surviving record"
            )));
        }
        // the archive first: a failure leaves the RIS unchanged and the merge can be retried
        let studies = self
            .index
            .move_patient_studies(tenant, &from.patient_id, &identity(&target))
            .await?;
        let tenant2 = tenant.clone();
        let actor2 = actor.clone();
        let (from_pid, to_pid) = (from.patient_id.clone(), target.patient_id.clone());
        let orders = write_tx!(self, |c, fx| {
                let moved = sqlx::query("UPDATE ris_orders SET patient = $1 WHERE tenant_id = $2 AND patient = $3")
                    .bind(into)
                    .bind(tenant2.as_str())
                    .bind(dup)
                    .execute(&mut *c)
                    .await
                    .map_err(RisError::db("move orders"))?
                    .rows_affected();
                sqlx::query("UPDATE ris_patients SET merged_into = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4")
                    .bind(into)
                    .bind(super::now_millis())
                    .bind(tenant2.as_str())
                    .bind(dup)
                    .execute(&mut *c)
                    .await
                    .map_err(RisError::db("mark merged"))?;
                fx.audit(
                    &tenant2,
                    &actor2,
                    "ris.patient.merge",
                    format!("patient {dup} into {into}"),
                    format!("patient_id {from_pid} -> {to_pid}; orders={moved} studies={studies}"),
                );
                Ok(moved)
            })
            .await?;
        Ok((self.patient(tenant, into).await?, orders, studies))
    }

    /// Link two records of the same person (IHE PIR "link"); both stay.
    pub async fn link_patients(
        &self,
        tenant: &TenantId,
        a: &str,
        b: &str,
        actor: &Actor,
    ) -> Result<Patient, RisError> {
        if a == b {
            return Err(RisError::Invalid(
                "a patient cannot be linked to itself".into(),
            ));
        }
        let tenant2 = tenant.clone();
        let actor2 = actor.clone();
        write_tx!(self, |c, fx| {
            patient_in(c, &tenant2, a).await?;
            patient_in(c, &tenant2, b).await?;
            let (x, y) = if a < b { (a, b) } else { (b, a) };
            sqlx::query(
                "INSERT INTO ris_patient_links (tenant_id, a, b, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant_id, a, b) DO NOTHING",
            )
            .bind(tenant2.as_str())
            .bind(x)
            .bind(y)
            .bind(super::now_millis())
            .execute(&mut *c)
            .await
            .map_err(RisError::db("link patients"))?;
            fx.audit(&tenant2, &actor2, "ris.patient.link", format!("patient {a} with {b}"), String::new());
            Ok(())
        })
        .await?;
        self.patient(tenant, a).await
    }

    pub async fn procedures(&self, tenant: &TenantId) -> Result<Vec<Procedure>, RisError> {
        let mut conn = self.conn().await?;
        let rows = sqlx::query(
            "SELECT code, scheme, name, modality, body_part, duration_min, preparation, subspecialty \
             FROM ris_procedures WHERE tenant_id = $1 ORDER BY modality, name",
        )
        .bind(tenant.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(RisError::db("procedures"))?;
        rows.iter()
            .map(|r| {
                Ok(Procedure {
                    code: s(r, "code")?,
                    scheme: s(r, "scheme")?,
                    name: s(r, "name")?,
                    modality: s(r, "modality")?,
                    body_part: s(r, "body_part")?,
                    duration_min: n(r, "duration_min")?,
                    preparation: s(r, "preparation")?,
                    subspecialty: s(r, "subspecialty")?,
                })
            })
            .collect()
    }

    /// Add or change a catalogue entry.
    pub async fn put_procedure(
        &self,
        tenant: &TenantId,
        p: &Procedure,
        actor: &Actor,
    ) -> Result<Procedure, RisError> {
        let code = check_text("code", &p.code, 16)?;
        if code.is_empty() {
            return Err(RisError::Invalid("code is required".into()));
        }
        let modality = check_text("modality", &p.modality, 16)?.to_ascii_uppercase();
        if modality.is_empty()
            || !modality
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            return Err(RisError::Invalid(format!(
                "modality {modality:?} is not a DICOM modality code"
            )));
        }
        if !(5..=480).contains(&p.duration_min) {
            return Err(RisError::Invalid(
                "duration_min must be between 5 and 480".into(),
            ));
        }
        let clean = Procedure {
            code,
            scheme: check_text("scheme", &p.scheme, 16)?,
            name: check_text("name", &p.name, 64)?,
            modality,
            body_part: check_text("body_part", &p.body_part, 16)?.to_ascii_uppercase(),
            duration_min: p.duration_min,
            preparation: check_text("preparation", &p.preparation, 64)?,
            subspecialty: check_text("subspecialty", &p.subspecialty, 64)?,
        };
        if clean.name.is_empty() {
            return Err(RisError::Invalid("name is required".into()));
        }
        let tenant2 = tenant.clone();
        let actor2 = actor.clone();
        let c2 = clean.clone();
        write_tx!(self, |c, fx| {
            sqlx::query(
                "INSERT INTO ris_procedures (tenant_id, code, scheme, name, modality, body_part, duration_min, preparation, subspecialty) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (tenant_id, code) DO UPDATE SET \
                 scheme = $3, name = $4, modality = $5, body_part = $6, duration_min = $7, preparation = $8, subspecialty = $9",
            )
            .bind(tenant2.as_str())
            .bind(c2.code.as_str())
            .bind(c2.scheme.as_str())
            .bind(c2.name.as_str())
            .bind(c2.modality.as_str())
            .bind(c2.body_part.as_str())
            .bind(c2.duration_min)
            .bind(c2.preparation.as_str())
            .bind(c2.subspecialty.as_str())
            .execute(&mut *c)
            .await
            .map_err(RisError::db("put procedure"))?;
            fx.audit(&tenant2, &actor2, "ris.procedure.put", format!("procedure {}", c2.code), c2.name.clone());
            Ok(())
        })
        .await?;
        Ok(clean)
    }
}
