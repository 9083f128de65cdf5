//! The modality's side of the workflow: the Modality Worklist answered from scheduled
//! appointments, and MPPS messages that advance the order. [`DimseBridge`] lets the DIMSE
//! service (which runs on association threads) call in.

use radris_core::{AeTitle, TenantId};
use radris_dicom::query::Matcher;
use radris_dicom::worklist::{
    ModalityWorkflow, Mpps, MppsStatus, WorkflowError, WorklistItem, WorklistQuery,
};
use sqlx::Row;

use super::{Actor, Ris, RisError, n, s, sync_appointment};
use crate::Priority;
use crate::workflow::OrderState;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// Epoch milliseconds of a DICOM date (`YYYYMMDD`) at UTC midnight.
fn day_ms(da: &str) -> Option<i64> {
    let d = chrono::NaiveDate::parse_from_str(da.get(..8)?, "%Y%m%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

/// The start-time window a date key allows (a prefilter: exact matching follows).
fn date_window(m: &Matcher) -> (i64, i64) {
    match m {
        Matcher::Single(d) => day_ms(d).map_or((i64::MIN, i64::MAX), |t| (t, t + DAY_MS)),
        Matcher::Range { from, to } => (
            from.as_deref().and_then(day_ms).unwrap_or(i64::MIN),
            to.as_deref()
                .and_then(day_ms)
                .map_or(i64::MAX, |t| t + DAY_MS),
        ),
        _ => (i64::MIN, i64::MAX),
    }
}

fn to_workflow(e: RisError) -> WorkflowError {
    match e {
        RisError::Invalid(m) => WorkflowError::Invalid(m),
        RisError::NotFound(m) => WorkflowError::UnknownStep(m),
        RisError::Illegal(t) => WorkflowError::InvalidState(t.to_string()),
        RisError::Conflict { message, .. } => WorkflowError::InvalidState(message),
        other => WorkflowError::Internal(other.to_string()),
    }
}

impl Ris {
    /// Scheduled steps of `tenant` matching a worklist query (booked or arrived, order
    /// scheduled or arrived), by start time.
    pub async fn worklist(
        &self,
        tenant: &TenantId,
        q: &WorklistQuery,
    ) -> Result<Vec<WorklistItem>, RisError> {
        let ae = match &q.station_ae {
            Matcher::Single(v) => v.clone(),
            _ => String::new(),
        };
        let (from, to) = date_window(&q.start_date);
        let mut conn = self.conn().await?;
        let rows = sqlx::query(
            "SELECT a.step_id, a.starts_at, a.state AS a_state, r.ae_title, r.station_name, r.name AS room, \
             o.accession, o.study_uid, o.priority, o.reason, o.referring, p.name, p.patient_id, p.issuer, p.birth_date, p.sex, \
             COALESCE(pr.code, '') AS code, COALESCE(pr.scheme, '') AS scheme, COALESCE(pr.name, '') AS pr_name, \
             COALESCE(pr.modality, r.modality) AS modality, COALESCE(pr.preparation, '') AS preparation \
             FROM ris_appointments a \
             JOIN ris_orders o ON o.tenant_id = a.tenant_id AND o.id = a.order_id \
             JOIN ris_patients p ON p.tenant_id = o.tenant_id AND p.id = o.patient \
             JOIN ris_resources r ON r.tenant_id = a.tenant_id AND r.id = a.resource_id \
             LEFT JOIN ris_procedures pr ON pr.tenant_id = o.tenant_id AND pr.code = o.procedure_code \
             WHERE a.tenant_id = $1 AND a.state IN ('booked', 'arrived') AND o.state IN ('scheduled', 'arrived') \
             AND ($2 = '' OR r.ae_title = $2) AND a.starts_at >= $3 AND a.starts_at < $4 \
             ORDER BY a.starts_at, a.step_id LIMIT 5000",
        )
        .bind(tenant.as_str())
        .bind(ae)
        .bind(from)
        .bind(to)
        .fetch_all(&mut *conn)
        .await
        .map_err(RisError::db("worklist"))?;
        let mut out = Vec::new();
        for r in &rows {
            let start =
                chrono::DateTime::from_timestamp_millis(n(r, "starts_at")?).unwrap_or_default();
            let priority = s(r, "priority")?;
            let pr_name = s(r, "pr_name")?;
            let item = WorklistItem {
                patient_name: s(r, "name")?,
                patient_id: s(r, "patient_id")?,
                issuer: s(r, "issuer")?,
                birth_date: s(r, "birth_date")?,
                sex: s(r, "sex")?,
                accession: s(r, "accession")?,
                study_uid: s(r, "study_uid")?,
                requested_procedure_id: s(r, "accession")?,
                requested_procedure_description: pr_name.clone(),
                procedure_code: (s(r, "code")?, s(r, "scheme")?, pr_name.clone()),
                priority: Priority::parse(&priority)
                    .map_or("ROUTINE", Priority::dicom)
                    .to_owned(),
                referring_physician: s(r, "referring")?,
                reason: s(r, "reason")?,
                step_id: s(r, "step_id")?,
                step_description: pr_name,
                station_ae: s(r, "ae_title")?,
                station_name: s(r, "station_name")?,
                modality: s(r, "modality")?,
                start_date: start.format("%Y%m%d").to_string(),
                start_time: start.format("%H%M%S").to_string(),
                performing_physician: String::new(),
                step_status: if s(r, "a_state")? == "arrived" {
                    "ARRIVED"
                } else {
                    "SCHEDULED"
                }
                .to_owned(),
                location: s(r, "room")?,
                preparation: s(r, "preparation")?,
            };
            if q.matches(&item) {
                out.push(item);
            }
        }
        Ok(out)
    }

    /// MPPS N-CREATE: the step is being performed. The order moves to `in_progress`.
    pub async fn mpps_create(
        &self,
        tenant: &TenantId,
        calling: &AeTitle,
        mpps_uid: &str,
        mpps: &Mpps,
    ) -> Result<(), WorkflowError> {
        if mpps.status != Some(MppsStatus::InProgress) {
            return Err(WorkflowError::Invalid(
                "an MPPS is created IN PROGRESS".into(),
            ));
        }
        let actor = Actor::ae(calling.as_str(), "dimse");
        let tenant2 = tenant.clone();
        let detail = mpps_detail(mpps);
        let steps = mpps.steps.clone();
        let station = mpps
            .station_ae
            .clone()
            .unwrap_or_else(|| calling.as_str().to_owned());
        write_tx!(self, |c, fx| {
            let exists = sqlx::query("SELECT status FROM ris_mpps WHERE tenant_id = $1 AND mpps_uid = $2")
                .bind(tenant2.as_str())
                .bind(mpps_uid)
                .fetch_optional(&mut *c)
                .await
                .map_err(RisError::db("mpps lookup"))?;
            if exists.is_some() {
                return Err(RisError::conflict(format!("duplicate:{mpps_uid}")));
            }
            let (order_id, step_id) = find_step(c, &tenant2, &steps).await?;
            let order = super::order_in(c, &tenant2, &order_id).await?;
            match order.state {
                OrderState::Scheduled | OrderState::Arrived => {
                    Ris::transition_in(c, fx, &tenant2, &order_id, OrderState::InProgress, &actor, &format!("MPPS {mpps_uid} IN PROGRESS")).await?;
                }
                OrderState::InProgress => {}
                other => {
                    return Err(RisError::conflict(format!("order {} is {other}; it cannot be performed now", order.accession)));
                }
            }
            sync_appointment(c, &tenant2, &order_id, OrderState::InProgress).await?;
            let now = super::now_millis();
            sqlx::query(
                "INSERT INTO ris_mpps (tenant_id, mpps_uid, order_id, step_id, status, station_ae, created_at, updated_at, detail_json) \
                 VALUES ($1, $2, $3, $4, 'IN PROGRESS', $5, $6, $6, $7)",
            )
            .bind(tenant2.as_str())
            .bind(mpps_uid)
            .bind(order_id.as_str())
            .bind(step_id.as_str())
            .bind(station.as_str())
            .bind(now)
            .bind(detail.as_str())
            .execute(&mut *c)
            .await
            .map_err(RisError::db("insert mpps"))?;
            fx.audit(&tenant2, &actor, "ris.mpps.create", format!("mpps {mpps_uid} order {order_id}"), format!("step {step_id} IN PROGRESS"));
            Ok(())
        })
        .await
        .map_err(|e| match e {
            RisError::Conflict { message, .. } if message.starts_with("duplicate:") => WorkflowError::Duplicate(mpps_uid.to_owned()),
            other => to_workflow(other),
        })
    }

    /// MPPS N-SET: progress, COMPLETED (images complete: the case is routed for reading) or
    /// DISCONTINUED (the order goes back to `arrived`). A final MPPS cannot change again.
    pub async fn mpps_set(
        &self,
        tenant: &TenantId,
        calling: &AeTitle,
        mpps_uid: &str,
        mpps: &Mpps,
    ) -> Result<(), WorkflowError> {
        let actor = Actor::ae(calling.as_str(), "dimse");
        let tenant2 = tenant.clone();
        let detail = mpps_detail(mpps);
        let status = mpps.status;
        let order_id = write_tx!(self, |c, fx| {
                let row = sqlx::query("SELECT status, order_id FROM ris_mpps WHERE tenant_id = $1 AND mpps_uid = $2")
                    .bind(tenant2.as_str())
                    .bind(mpps_uid)
                    .fetch_optional(&mut *c)
                    .await
                    .map_err(RisError::db("mpps lookup"))?
                    .ok_or_else(|| RisError::NotFound(format!("nosuch:{mpps_uid}")))?;
                let current: String = row.try_get("status").map_err(RisError::db("mpps status"))?;
                let order_id: String = row.try_get("order_id").map_err(RisError::db("mpps order"))?;
                if current != "IN PROGRESS" {
                    return Err(RisError::conflict(format!("MPPS {mpps_uid} is {current} and cannot change")));
                }
                let new_status = status.unwrap_or(MppsStatus::InProgress);
                match new_status {
                    MppsStatus::Completed => {
                        Ris::transition_in(c, fx, &tenant2, &order_id, OrderState::ImagesComplete, &actor, &format!("MPPS {mpps_uid} COMPLETED")).await?;
                        sync_appointment(c, &tenant2, &order_id, OrderState::ImagesComplete).await?;
                    }
                    MppsStatus::Discontinued => {
                        Ris::transition_in(c, fx, &tenant2, &order_id, OrderState::Arrived, &actor, &format!("MPPS {mpps_uid} DISCONTINUED")).await?;
                        sync_appointment(c, &tenant2, &order_id, OrderState::Arrived).await?;
                    }
                    MppsStatus::InProgress => {}
                }
                sqlx::query("UPDATE ris_mpps SET status = $1, updated_at = $2, detail_json = $3 WHERE tenant_id = $4 AND mpps_uid = $5")
                    .bind(new_status.as_str())
                    .bind(super::now_millis())
                    .bind(detail.as_str())
                    .bind(tenant2.as_str())
                    .bind(mpps_uid)
                    .execute(&mut *c)
                    .await
                    .map_err(RisError::db("update mpps"))?;
                fx.audit(&tenant2, &actor, "ris.mpps.set", format!("mpps {mpps_uid} order {order_id}"), new_status.as_str().to_owned());
                Ok(order_id)
            })
            .await
            .map_err(|e| match e {
                RisError::NotFound(m) if m.starts_with("nosuch:") => WorkflowError::NoSuchInstance(mpps_uid.to_owned()),
                other => to_workflow(other),
            })?;
        if status == Some(MppsStatus::Completed) {
            self.route_order(tenant, &order_id)
                .await
                .map_err(to_workflow)?;
        }
        Ok(())
    }
}

/// The order and step an MPPS performs: by Scheduled Procedure Step ID, else by accession.
async fn find_step(
    c: &mut sqlx::AnyConnection,
    tenant: &TenantId,
    steps: &[radris_dicom::worklist::ScheduledStepRef],
) -> Result<(String, String), RisError> {
    for st in steps {
        if !st.step_id.is_empty() {
            let row = sqlx::query("SELECT order_id, step_id FROM ris_appointments WHERE tenant_id = $1 AND step_id = $2")
                .bind(tenant.as_str())
                .bind(st.step_id.as_str())
                .fetch_optional(&mut *c)
                .await
                .map_err(RisError::db("step lookup"))?;
            if let Some(r) = row {
                return Ok((s(&r, "order_id")?, s(&r, "step_id")?));
            }
        }
        if !st.accession.is_empty() {
            let row = sqlx::query(
                "SELECT o.id AS order_id, COALESCE(a.step_id, '') AS step_id FROM ris_orders o \
                 LEFT JOIN ris_appointments a ON a.tenant_id = o.tenant_id AND a.order_id = o.id AND a.state IN ('booked', 'arrived', 'in_progress') \
                 WHERE o.tenant_id = $1 AND o.accession = $2",
            )
            .bind(tenant.as_str())
            .bind(st.accession.as_str())
            .fetch_optional(&mut *c)
            .await
            .map_err(RisError::db("accession lookup"))?;
            if let Some(r) = row {
                return Ok((s(&r, "order_id")?, s(&r, "step_id")?));
            }
        }
    }
    let named = steps
        .iter()
        .map(|st| format!("step {:?} accession {:?}", st.step_id, st.accession))
        .collect::<Vec<_>>()
        .join(", ");
    Err(RisError::NotFound(if named.is_empty() {
        "no scheduled step referenced (unscheduled procedures are not accepted)".into()
    } else {
        named
    }))
}

fn mpps_detail(m: &Mpps) -> String {
    serde_json::json!({
        "status": m.status.map(MppsStatus::as_str),
        "station_ae": m.station_ae,
        "modality": m.modality,
        "start": m.start,
        "end": m.end,
        "description": m.description,
        "discontinuation_reason": m.discontinuation_reason,
        "series": m.series.iter().map(|s| serde_json::json!({
            "series_uid": s.series_uid, "modality": s.modality, "instances": s.sop_instance_uids.len()
        })).collect::<Vec<_>>(),
    })
    .to_string()
}

/// The RIS as the DIMSE worklist and MPPS services see it: blocking calls onto the server's
/// runtime (association threads are not runtime threads).
pub struct DimseBridge {
    ris: Ris,
    runtime: tokio::runtime::Handle,
}

impl DimseBridge {
    pub fn new(ris: Ris, runtime: tokio::runtime::Handle) -> Self {
        DimseBridge { ris, runtime }
    }
}

impl ModalityWorkflow for DimseBridge {
    fn worklist(
        &self,
        tenant: &TenantId,
        _calling: &AeTitle,
        query: &WorklistQuery,
    ) -> Result<Vec<WorklistItem>, WorkflowError> {
        self.runtime
            .block_on(self.ris.worklist(tenant, query))
            .map_err(to_workflow)
    }

    fn mpps_create(
        &self,
        tenant: &TenantId,
        calling: &AeTitle,
        mpps_uid: &str,
        mpps: &Mpps,
    ) -> Result<(), WorkflowError> {
        self.runtime
            .block_on(self.ris.mpps_create(tenant, calling, mpps_uid, mpps))
    }

    fn mpps_set(
        &self,
        tenant: &TenantId,
        calling: &AeTitle,
        mpps_uid: &str,
        mpps: &Mpps,
    ) -> Result<(), WorkflowError> {
        self.runtime
            .block_on(self.ris.mpps_set(tenant, calling, mpps_uid, mpps))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_keys_give_start_windows() {
        let d = day_ms("20261128").unwrap();
        assert_eq!(
            date_window(&Matcher::Single("20261128".into())),
            (d, d + DAY_MS)
        );
        assert_eq!(
            date_window(&Matcher::Range {
                from: Some("20261128".into()),
                to: None
            }),
            (d, i64::MAX)
        );
        assert_eq!(
            date_window(&Matcher::Range {
                from: None,
                to: Some("20261128".into())
            }),
            (i64::MIN, d + DAY_MS)
        );
        assert_eq!(date_window(&Matcher::Universal), (i64::MIN, i64::MAX));
        assert_eq!(day_ms("2026-11-28"), None);
    }
}
