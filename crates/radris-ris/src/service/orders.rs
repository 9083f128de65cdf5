//! Orders: placement (accession number, pre-assigned Study Instance UID), change, cancel,
//! and lists.

use radris_core::TenantId;

use super::patients::check_text;
use super::{
    Actor, ORDER_SELECT, Ris, RisError, new_id, next_counter, order_row, sync_appointment,
};
use crate::model::*;
use crate::workflow::OrderState;

/// A Study Instance UID under the UUID-derived root (PS3.5 B.2).
fn new_study_uid() -> String {
    format!("2.25.{}", uuid::Uuid::now_v7().as_u128())
}

/// What a list of orders is filtered on.
#[derive(Debug, Clone, Default)]
pub struct OrderQuery {
    pub states: Vec<OrderState>,
    pub patient: Option<String>,
    /// Accession number (exact) or patient name prefix.
    pub q: Option<String>,
    /// Only orders this user placed or whose referring physician is this person name
    /// (upper-cased): what a referring physician sees.
    pub referrer: Option<(String, String)>,
    pub limit: i64,
}

impl Ris {
    /// Place an order. The procedure must be in the catalogue and the patient known (a
    /// merged-away record resolves to the surviving one).
    pub async fn create_order(
        &self,
        tenant: &TenantId,
        new: &NewOrder,
        actor: &Actor,
    ) -> Result<Order, RisError> {
        let reason = check_text("reason", &new.reason, 64)?;
        let referring = check_text("referring_physician", &new.referring_physician, 320)?;
        let accession = new
            .accession
            .as_deref()
            .map(|a| check_text("accession", a, 16))
            .transpose()?
            .filter(|a| !a.is_empty());
        let id = new_id();
        let tenant2 = tenant.clone();
        let actor2 = actor.clone();
        let id2 = id.clone();
        let new2 = new.clone();
        write_tx!(self, |c, fx| {
            let proc_ok = sqlx::query("SELECT code FROM ris_procedures WHERE tenant_id = $1 AND code = $2")
                .bind(tenant2.as_str())
                .bind(new2.procedure_code.as_str())
                .fetch_optional(&mut *c)
                .await
                .map_err(RisError::db("procedure lookup"))?;
            if proc_ok.is_none() {
                return Err(RisError::Invalid(format!(
                    "unknown procedure code {:?}: not in the catalogue",
                    new2.procedure_code
                )));
            }
            let patient = match super::patients::patient_in(c, &tenant2, &new2.patient).await {
                Ok(p) => p,
                Err(RisError::NotFound(_)) => {
                    return Err(RisError::Invalid(format!("unknown patient {:?}", new2.patient)));
                }
                Err(e) => return Err(e),
            };
            let patient_id = patient.merged_into.clone().unwrap_or(patient.id);
            let accession = match accession {
                Some(a) => {
                    let taken = sqlx::query("SELECT id FROM ris_orders WHERE tenant_id = $1 AND accession = $2")
                        .bind(tenant2.as_str())
                        .bind(a.as_str())
                        .fetch_optional(&mut *c)
                        .await
                        .map_err(RisError::db("accession lookup"))?;
                    if taken.is_some() {
                        return Err(RisError::conflict(format!("accession number {a} is already in use")));
                    }
                    a
                }
                None => {
                    let n = next_counter(c, &tenant2, "accession_seq").await?;
                    let day = chrono::Utc::now().format("%y%m%d");
                    format!("A{day}{n:05}")
                }
            };
            let now = super::now_millis();
            sqlx::query(
                "INSERT INTO ris_orders (tenant_id, id, accession, patient, procedure_code, priority, reason, referring, \
                 referring_norm, ordered_by, state, study_uid, site, assigned_to, assigned_group, assignment_reason, \
                 claimed_by, escalated_at, ordered_at, scheduled_at, arrived_at, started_at, images_at, preliminary_at, \
                 final_at, preliminary_by, final_by, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                 'ordered', $11, '', '', '', '', '', 0, $12, 0, 0, 0, 0, 0, 0, '', '', $12)",
            )
            .bind(tenant2.as_str())
            .bind(id2.as_str())
            .bind(accession.as_str())
            .bind(patient_id.as_str())
            .bind(new2.procedure_code.as_str())
            .bind(new2.priority.as_str())
            .bind(reason.as_str())
            .bind(referring.as_str())
            .bind(radris_core::person_name_key(&referring))
            .bind(actor2.user.as_str())
            .bind(new_study_uid())
            .bind(now)
            .execute(&mut *c)
            .await
            .map_err(RisError::db("insert order"))?;
            sqlx::query(
                "INSERT INTO ris_order_history (tenant_id, order_id, seq, at, from_state, to_state, actor, detail) \
                 VALUES ($1, $2, 1, $3, '', 'ordered', $4, $5)",
            )
            .bind(tenant2.as_str())
            .bind(id2.as_str())
            .bind(now)
            .bind(actor2.actor.as_str())
            .bind(format!("{} {}", new2.procedure_code, new2.priority.as_str()))
            .execute(&mut *c)
            .await
            .map_err(RisError::db("order history"))?;
            fx.audit(
                &tenant2,
                &actor2,
                "ris.order.create",
                format!("order {id2} accession {accession}"),
                format!("procedure={} priority={}", new2.procedure_code, new2.priority.as_str()),
            );
            fx.event(radris_core::events::Event::OrderChanged {
                tenant: tenant2.clone(),
                order_id: id2.clone(),
                accession,
                from: String::new(),
                to: "ordered".into(),
            });
            Ok(())
        })
        .await?;
        self.order(tenant, &id, false).await
    }

    /// Change priority, reason, referring physician or (before acquisition) the procedure.
    pub async fn change_order(
        &self,
        tenant: &TenantId,
        id: &str,
        change: &OrderChange,
        actor: &Actor,
    ) -> Result<Order, RisError> {
        let reason = change
            .reason
            .as_deref()
            .map(|r| check_text("reason", r, 64))
            .transpose()?;
        let referring = change
            .referring_physician
            .as_deref()
            .map(|r| check_text("referring_physician", r, 320))
            .transpose()?;
        let tenant2 = tenant.clone();
        let actor2 = actor.clone();
        let change2 = change.clone();
        write_tx!(self, |c, fx| {
            let before = super::order_in(c, &tenant2, id).await?;
            if matches!(before.state, OrderState::Cancelled | OrderState::Final | OrderState::Amended) {
                return Err(RisError::conflict(format!("order {id} is {} and cannot be changed", before.state)));
            }
            let mut what = Vec::new();
            if let Some(code) = &change2.procedure_code {
                if !before.state.before_images() {
                    return Err(RisError::conflict(format!(
                        "the procedure of order {id} cannot change once acquisition started (state {})",
                        before.state
                    )));
                }
                if before.appointment.is_some() {
                    return Err(RisError::conflict("cancel the appointment before changing the procedure"));
                }
                let known = sqlx::query("SELECT code FROM ris_procedures WHERE tenant_id = $1 AND code = $2")
                    .bind(tenant2.as_str())
                    .bind(code.as_str())
                    .fetch_optional(&mut *c)
                    .await
                    .map_err(RisError::db("procedure lookup"))?;
                if known.is_none() {
                    return Err(RisError::Invalid(format!("unknown procedure code {code:?}: not in the catalogue")));
                }
                what.push(format!("procedure {} -> {code}", before.procedure.code));
            }
            if let Some(p) = change2.priority
                && p != before.priority
            {
                what.push(format!("priority {} -> {}", before.priority.as_str(), p.as_str()));
            }
            if reason.is_some() {
                what.push("reason".to_owned());
            }
            if referring.is_some() {
                what.push("referring physician".to_owned());
            }
            let referring = referring.unwrap_or(before.referring_physician);
            sqlx::query(
                "UPDATE ris_orders SET procedure_code = $1, priority = $2, reason = $3, referring = $4, \
                 referring_norm = $5, updated_at = $6 WHERE tenant_id = $7 AND id = $8",
            )
            .bind(change2.procedure_code.unwrap_or(before.procedure.code))
            .bind(change2.priority.unwrap_or(before.priority).as_str())
            .bind(reason.unwrap_or(before.reason))
            .bind(referring.as_str())
            .bind(radris_core::person_name_key(&referring))
            .bind(super::now_millis())
            .bind(tenant2.as_str())
            .bind(id)
            .execute(&mut *c)
            .await
            .map_err(RisError::db("update order"))?;
            fx.audit(&tenant2, &actor2, "ris.order.change", format!("order {id} accession {}", before.accession), what.join("; "));
            Ok(())
        })
        .await?;
        self.order(tenant, id, false).await
    }

    /// Cancel an order (not once a report exists); its appointment is released.
    pub async fn cancel_order(
        &self,
        tenant: &TenantId,
        id: &str,
        reason: &str,
        actor: &Actor,
    ) -> Result<Order, RisError> {
        let reason = check_text("reason", reason, 64)?;
        if reason.is_empty() {
            return Err(RisError::Invalid("a cancellation needs a reason".into()));
        }
        let tenant2 = tenant.clone();
        let actor2 = actor.clone();
        write_tx!(self, |c, fx| {
            Ris::transition_in(c, fx, &tenant2, id, OrderState::Cancelled, &actor2, &reason)
                .await?;
            sync_appointment(c, &tenant2, id, OrderState::Cancelled).await
        })
        .await?;
        self.order(tenant, id, false).await
    }

    /// Orders, newest first.
    pub async fn orders(&self, tenant: &TenantId, q: &OrderQuery) -> Result<Vec<Order>, RisError> {
        let mut sql = format!("{ORDER_SELECT} WHERE o.tenant_id = $1");
        let mut binds: Vec<String> = vec![tenant.as_str().to_owned()];
        let mut next = |sql: &mut String, clause: &str, v: String| {
            binds.push(v);
            sql.push_str(&clause.replace("$?", &format!("${}", binds.len())));
        };
        if !q.states.is_empty() {
            let list = q
                .states
                .iter()
                .map(|s| format!("'{}'", s.as_str()))
                .collect::<Vec<_>>()
                .join(", ");
            sql.push_str(&format!(" AND o.state IN ({list})"));
        }
        if let Some(p) = &q.patient {
            next(&mut sql, " AND o.patient = $?", p.clone());
        }
        if let Some(text) = q.q.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            next(&mut sql, " AND (o.accession = $?", text.to_owned());
            next(
                &mut sql,
                " OR p.name_norm LIKE $?)",
                format!("{}%", text.to_uppercase().replace(['%', '_'], "")),
            );
        }
        if let Some((user, person)) = &q.referrer {
            next(&mut sql, " AND (o.ordered_by = $?", user.clone());
            next(
                &mut sql,
                " OR (o.referring_norm <> '' AND o.referring_norm = $?))",
                person.clone(),
            );
        }
        sql.push_str(&format!(
            " ORDER BY o.ordered_at DESC, o.id DESC LIMIT {}",
            q.limit.clamp(1, 1000)
        ));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in &binds {
            query = query.bind(b.as_str());
        }
        let mut conn = self.conn().await?;
        let rows = query
            .fetch_all(&mut *conn)
            .await
            .map_err(RisError::db("orders"))?;
        rows.iter().map(order_row).collect()
    }

    /// The order of an accession number, if any.
    pub async fn order_by_accession(
        &self,
        tenant: &TenantId,
        accession: &str,
    ) -> Result<Option<Order>, RisError> {
        let mut conn = self.conn().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{ORDER_SELECT} WHERE o.tenant_id = $1 AND o.accession = $2"
        )))
        .bind(tenant.as_str())
        .bind(accession)
        .fetch_optional(&mut *conn)
        .await
        .map_err(RisError::db("order by accession"))?;
        row.as_ref().map(order_row).transpose()
    }
}
