//! Reconciliation: arriving studies are linked to their order by the pre-assigned Study
//! Instance UID, else by accession number and patient; the rest wait in a queue until a
//! technologist picks the order (an IOCM-style correction of the archived study, audited).

use radris_core::TenantId;
use radris_store::index::PatientIdentity;

use super::{Actor, ORDER_SELECT, Ris, RisError, n, order_row, s};
use crate::model::*;
use crate::workflow::OrderState;

/// What reconciliation did with a study.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciled {
    /// Linked to this order (now or before).
    Linked { order_id: String },
    /// Put on the queue, with the reason.
    Queued { reason: String },
    /// Nothing to do (the study is gone, or already queued).
    Skipped,
}

impl Ris {
    /// Reconcile the studies received in the last `window_ms` that are neither linked nor
    /// queued (after the event bus dropped events, and at start for studies imported while
    /// the server was down). Returns how many were looked at.
    pub async fn reconcile_recent(&self, window_ms: i64) -> Result<usize, RisError> {
        let since = super::now_millis() - window_ms;
        let rows = {
            let mut conn = self.conn().await?;
            sqlx::query(
                "SELECT st.tenant_id, st.study_uid FROM studies st WHERE st.created_at >= $1 \
                 AND NOT EXISTS (SELECT 1 FROM ris_orders o WHERE o.tenant_id = st.tenant_id AND o.study_uid = st.study_uid) \
                 AND NOT EXISTS (SELECT 1 FROM ris_unmatched u WHERE u.tenant_id = st.tenant_id AND u.study_uid = st.study_uid) \
                 ORDER BY st.created_at LIMIT 10000",
            )
            .bind(since)
            .fetch_all(&mut *conn)
            .await
            .map_err(RisError::db("recent studies"))?
        };
        for r in &rows {
            let tenant = TenantId::parse(&s(r, "tenant_id")?)
                .map_err(|e| RisError::Database(e.to_string()))?;
            self.reconcile_study(&tenant, &s(r, "study_uid")?).await?;
        }
        Ok(rows.len())
    }

    /// Whether the tenant uses the RIS (has a procedure catalogue): a tenant that only
    /// archives gets no reconciliation queue.
    async fn uses_ris(&self, tenant: &TenantId) -> Result<bool, RisError> {
        let mut conn = self.conn().await?;
        let row = sqlx::query("SELECT code FROM ris_procedures WHERE tenant_id = $1 LIMIT 1")
            .bind(tenant.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(RisError::db("catalogue"))?;
        Ok(row.is_some())
    }

    /// Reconcile a study that received instances. Idempotent.
    pub async fn reconcile_study(
        &self,
        tenant: &TenantId,
        study_uid: &str,
    ) -> Result<Reconciled, RisError> {
        if !self.uses_ris(tenant).await? {
            return Ok(Reconciled::Skipped);
        }
        let Some(study) = self.index.study(tenant, study_uid).await? else {
            return Ok(Reconciled::Skipped);
        };
        let mut conn = self.conn().await?;
        let by_uid = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{ORDER_SELECT} WHERE o.tenant_id = $1 AND o.study_uid = $2 AND o.state <> 'cancelled'"
        )))
        .bind(tenant.as_str())
        .bind(study_uid)
        .fetch_optional(&mut *conn)
        .await
        .map_err(RisError::db("order by study"))?;
        let by_accession = if by_uid.is_none() && !study.accession.is_empty() {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "{ORDER_SELECT} WHERE o.tenant_id = $1 AND o.accession = $2 AND o.state <> 'cancelled'"
            )))
            .bind(tenant.as_str())
            .bind(study.accession.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(RisError::db("order by accession"))?
        } else {
            None
        };
        let queued = sqlx::query(
            "SELECT resolved_at FROM ris_unmatched WHERE tenant_id = $1 AND study_uid = $2",
        )
        .bind(tenant.as_str())
        .bind(study_uid)
        .fetch_optional(&mut *conn)
        .await
        .map_err(RisError::db("queue lookup"))?;
        drop(conn);
        let candidate = by_uid
            .or(by_accession)
            .as_ref()
            .map(order_row)
            .transpose()?;
        let reason = match &candidate {
            Some(o) if o.patient.patient_id == study.patient_id => {
                self.link(tenant, o, study_uid, &Actor::system(), "images arrived")
                    .await?;
                return Ok(Reconciled::Linked {
                    order_id: o.id.clone(),
                });
            }
            Some(o) => format!(
                "accession {} belongs to patient {} ({}), but the study is filed under patient ID {:?}",
                o.accession, o.patient.patient_id, o.patient.name, study.patient_id
            ),
            None if study.accession.is_empty() => {
                "the study has no accession number and no order names it".to_owned()
            }
            None => format!("no order has accession number {:?}", study.accession),
        };
        if queued.is_some() {
            return Ok(Reconciled::Skipped);
        }
        let tenant2 = tenant.clone();
        let reason2 = reason.clone();
        write_tx!(self, |c, fx| {
            sqlx::query(
                "INSERT INTO ris_unmatched (tenant_id, study_uid, reason, received_at, resolved_at, resolved_by, order_id) \
                 VALUES ($1, $2, $3, $4, 0, '', '') ON CONFLICT (tenant_id, study_uid) DO NOTHING",
            )
            .bind(tenant2.as_str())
            .bind(study_uid)
            .bind(reason2.as_str())
            .bind(super::now_millis())
            .execute(&mut *c)
            .await
            .map_err(RisError::db("queue study"))?;
            fx.audit(&tenant2, &Actor::system(), "ris.reconcile.queue", format!("study {study_uid}"), reason2.clone());
            Ok(())
        })
        .await?;
        Ok(Reconciled::Queued { reason })
    }

    /// Link an order to its study; images arriving start an order that was scheduled.
    async fn link(
        &self,
        tenant: &TenantId,
        o: &Order,
        study_uid: &str,
        actor: &Actor,
        why: &str,
    ) -> Result<(), RisError> {
        let tenant2 = tenant.clone();
        let actor2 = actor.clone();
        let (id, state, old_uid) = (o.id.clone(), o.state, o.study_uid.clone());
        write_tx!(self, |c, fx| {
            if old_uid != study_uid {
                sqlx::query("UPDATE ris_orders SET study_uid = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4")
                    .bind(study_uid)
                    .bind(super::now_millis())
                    .bind(tenant2.as_str())
                    .bind(id.as_str())
                    .execute(&mut *c)
                    .await
                    .map_err(RisError::db("link study"))?;
                fx.audit(&tenant2, &actor2, "ris.reconcile.link", format!("order {id}"), format!("study {study_uid}: {why}"));
            }
            if matches!(state, OrderState::Scheduled | OrderState::Arrived) {
                Ris::transition_in(c, fx, &tenant2, &id, OrderState::InProgress, &actor2, why).await?;
                super::sync_appointment(c, &tenant2, &id, OrderState::InProgress).await?;
            }
            Ok(())
        })
        .await
    }

    /// The open reconciliation queue, with candidate orders (same accession or same patient
    /// ID, not yet reported).
    pub async fn unmatched(&self, tenant: &TenantId) -> Result<Vec<Unmatched>, RisError> {
        let rows = {
            let mut conn = self.conn().await?;
            sqlx::query(
                "SELECT study_uid, reason, received_at FROM ris_unmatched WHERE tenant_id = $1 AND resolved_at = 0 \
                 ORDER BY received_at LIMIT 500",
            )
            .bind(tenant.as_str())
            .fetch_all(&mut *conn)
            .await
            .map_err(RisError::db("unmatched"))?
        };
        let mut out = Vec::new();
        for r in &rows {
            let uid = s(r, "study_uid")?;
            let Some(st) = self.index.study(tenant, &uid).await? else {
                continue;
            };
            let mut conn = self.conn().await?;
            let cands = sqlx::query(sqlx::AssertSqlSafe(format!(
                "{ORDER_SELECT} WHERE o.tenant_id = $1 AND o.state IN ('ordered', 'scheduled', 'arrived', 'in_progress', 'images_complete') \
                 AND (o.accession = $2 OR p.patient_id = $3) ORDER BY o.ordered_at DESC LIMIT 20"
            )))
            .bind(tenant.as_str())
            .bind(st.accession.as_str())
            .bind(st.patient_id.as_str())
            .fetch_all(&mut *conn)
            .await
            .map_err(RisError::db("candidates"))?;
            out.push(Unmatched {
                study_uid: uid,
                patient_id: st.patient_id,
                patient_name: st.patient_name,
                accession: st.accession,
                study_date: st.study_date,
                modalities: st.modalities,
                description: st.description,
                reason: s(r, "reason")?,
                received_at: Time(n(r, "received_at")?),
                candidates: cands.iter().map(order_row).collect::<Result<_, _>>()?,
            });
        }
        Ok(out)
    }

    /// Resolve a queued study: it is filed under the order's patient and accession (the
    /// archive's index is corrected; the stored objects stay as received) and linked.
    pub async fn resolve_unmatched(
        &self,
        tenant: &TenantId,
        study_uid: &str,
        order_id: &str,
        actor: &Actor,
    ) -> Result<Order, RisError> {
        let order = match self.order(tenant, order_id, false).await {
            Ok(o) => o,
            Err(RisError::NotFound(_)) => {
                return Err(RisError::Invalid(format!("unknown order {order_id}")));
            }
            Err(e) => return Err(e),
        };
        if matches!(
            order.state,
            OrderState::Cancelled
                | OrderState::Final
                | OrderState::Amended
                | OrderState::Preliminary
        ) {
            return Err(RisError::conflict(format!(
                "order {} is {}",
                order.accession, order.state
            )));
        }
        {
            let mut conn = self.conn().await?;
            let open = sqlx::query("SELECT study_uid FROM ris_unmatched WHERE tenant_id = $1 AND study_uid = $2 AND resolved_at = 0")
                .bind(tenant.as_str())
                .bind(study_uid)
                .fetch_optional(&mut *conn)
                .await
                .map_err(RisError::db("queue lookup"))?;
            if open.is_none() {
                return Err(RisError::NotFound(format!("unmatched study {study_uid}")));
            }
        }
        let who = PatientIdentity {
            patient_id: order.patient.patient_id.clone(),
            issuer: order.patient.issuer.clone(),
            name: order.patient.name.clone(),
            birth_date: order.patient.birth_date.clone(),
            sex: order.patient.sex.clone(),
        };
        let before = self.index.study(tenant, study_uid).await?;
        if !self
            .index
            .correct_study(tenant, study_uid, &who, Some(&order.accession))
            .await?
        {
            return Err(RisError::NotFound(format!("study {study_uid}")));
        }
        let tenant2 = tenant.clone();
        let actor2 = actor.clone();
        let was = before
            .map(|b| format!("patient {:?} accession {:?}", b.patient_id, b.accession))
            .unwrap_or_default();
        let acc = order.accession.clone();
        let pid = order.patient.patient_id.clone();
        write_tx!(self, |c, fx| {
            sqlx::query(
                "UPDATE ris_unmatched SET resolved_at = $1, resolved_by = $2, order_id = $3 WHERE tenant_id = $4 AND study_uid = $5",
            )
            .bind(super::now_millis())
            .bind(actor2.actor.as_str())
            .bind(order_id)
            .bind(tenant2.as_str())
            .bind(study_uid)
            .execute(&mut *c)
            .await
            .map_err(RisError::db("resolve"))?;
            fx.audit(
                &tenant2,
                &actor2,
                "ris.reconcile.resolve",
                format!("study {study_uid} order {order_id}"),
                format!("corrected from {was} to patient {pid:?} accession {acc:?}"),
            );
            Ok(())
        })
        .await?;
        self.link(
            tenant,
            &order,
            study_uid,
            actor,
            "reconciled by a technologist",
        )
        .await?;
        self.order(tenant, order_id, false).await
    }
}
