//! [`Ris`]: the RIS's operations on the index (tables `ris_*`, migration 13 of
//! `radris-store`). Every write runs in one transaction; state changes are audited and
//! published on the event bus only after their transaction committed, so subscribers never
//! see a change that was rolled back.
//!
//! **Invariant:** every statement filters on `tenant_id`, which callers pass first from the
//! authenticated principal or the calling AE's tenant.
//! **Invariant:** an order changes state only through [`Ris::transition_in`], which checks
//! the state machine ([`crate::workflow`]), stamps the milestone, writes the history row and
//! queues the audit record and event.

use std::sync::Arc;

use radris_core::TenantId;
use radris_core::audit::{Audit, AuditRecord};
use radris_core::events::{Event, EventBus};
use radris_store::{Index, StoreError};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::Priority;
use crate::model::*;
use crate::workflow::{IllegalTransition, OrderState};

/// Run a block in one write transaction: `write_tx!(ris, |c, fx| { … Ok(v) }).await`
/// gives `Result<v, RisError>`. `c` is the transaction's connection, `fx` collects audit
/// records and events; they are sent only after the commit. (A macro rather than a method
/// taking an async closure: the future must stay `Send` for axum handlers.)
macro_rules! write_tx {
    ($ris:expr, |$c:ident, $fx:ident| $body:expr) => {
        async {
            let ris: &$crate::service::Ris = $ris;
            let mut conn = ris.conn().await?;
            let mut tx = ris.index.begin_write(&mut conn).await?;
            let mut effects = $crate::service::Effects::default();
            let value = {
                let $c: &mut sqlx::AnyConnection = &mut *tx;
                let $fx: &mut $crate::service::Effects = &mut effects;
                let r: Result<_, $crate::service::RisError> = async { $body }.await;
                r?
            };
            tx.commit()
                .await
                .map_err($crate::service::RisError::db("commit"))?;
            ris.emit(effects);
            Ok::<_, $crate::service::RisError>(value)
        }
    };
}

mod analytics;
mod modality;
mod orders;
mod patients;
mod reading;
mod reconcile;
mod schedule;

pub use modality::DimseBridge;
pub use orders::OrderQuery;
pub use reconcile::Reconciled;

/// Why a RIS operation was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RisError {
    #[error("{0} not found")]
    NotFound(String),
    /// The request names something unknown or carries a bad value (HTTP 422).
    #[error("{0}")]
    Invalid(String),
    /// The request conflicts with the current state (HTTP 409); `conflicts` lists the
    /// appointments in the way of a booking.
    #[error("{message}")]
    Conflict {
        message: String,
        conflicts: Vec<Appointment>,
    },
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("index: {0}")]
    Database(String),
}

impl RisError {
    pub(crate) fn db(what: &str) -> impl FnOnce(sqlx::Error) -> RisError + '_ {
        move |e| RisError::Database(format!("{what}: {e}"))
    }

    pub(crate) fn conflict(message: impl Into<String>) -> RisError {
        RisError::Conflict {
            message: message.into(),
            conflicts: Vec::new(),
        }
    }
}

/// Who acts, for history rows and audit records: `user:<name>`, `ae:<AE title>` or `system`.
#[derive(Debug, Clone)]
pub struct Actor {
    pub actor: String,
    /// The user name (empty for AEs and the system).
    pub user: String,
    /// Network source or `local`.
    pub source: String,
}

impl Actor {
    pub fn user(name: &str, source: &str) -> Actor {
        Actor {
            actor: format!("user:{name}"),
            user: name.to_owned(),
            source: source.to_owned(),
        }
    }

    pub fn ae(ae: &str, source: &str) -> Actor {
        Actor {
            actor: format!("ae:{}", ae.trim()),
            user: String::new(),
            source: source.to_owned(),
        }
    }

    pub fn system() -> Actor {
        Actor {
            actor: "system".into(),
            user: String::new(),
            source: "local".into(),
        }
    }
}

/// Audit records and events of a transaction, sent once it committed.
#[derive(Default)]
pub(crate) struct Effects {
    records: Vec<AuditRecord>,
    events: Vec<Event>,
}

impl Effects {
    pub(crate) fn audit(
        &mut self,
        tenant: &TenantId,
        actor: &Actor,
        action: &str,
        resource: String,
        detail: String,
    ) {
        self.records.push(AuditRecord::success(
            tenant.as_str(),
            &actor.actor,
            action,
            resource,
            detail,
            &actor.source,
        ));
    }

    pub(crate) fn event(&mut self, e: Event) {
        self.events.push(e);
    }
}

/// The RIS on the archive's index.
#[derive(Clone)]
pub struct Ris {
    pub(crate) index: Index,
    pub(crate) events: EventBus,
    pub(crate) audit: Audit,
}

pub(crate) fn s(row: &AnyRow, col: &str) -> Result<String, RisError> {
    row.try_get::<String, _>(col)
        .map_err(|e| RisError::Database(format!("column {col}: {e}")))
}

pub(crate) fn n(row: &AnyRow, col: &str) -> Result<i64, RisError> {
    row.try_get::<i64, _>(col)
        .map_err(|e| RisError::Database(format!("column {col}: {e}")))
}

/// A new id (UUIDv7).
pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The SELECT of an order with its patient, procedure and active appointment.
pub(crate) const ORDER_SELECT: &str = "SELECT o.id, o.accession, o.state, o.priority, o.reason, o.referring, o.ordered_by, \
 o.study_uid, o.site, o.assigned_to, o.assigned_group, o.assignment_reason, o.claimed_by, o.escalated_at, \
 o.ordered_at, o.scheduled_at, o.arrived_at, o.started_at, o.images_at, o.preliminary_at, o.final_at, o.updated_at, \
 p.id AS p_id, p.patient_id AS p_pid, p.issuer AS p_issuer, p.name AS p_name, p.birth_date AS p_birth, p.sex AS p_sex, \
 o.procedure_code AS pr_code, COALESCE(pr.name, '') AS pr_name, COALESCE(pr.modality, '') AS pr_modality, \
 COALESCE(pr.body_part, '') AS pr_body, COALESCE(pr.duration_min, 0) AS pr_duration, COALESCE(pr.subspecialty, '') AS pr_sub, \
 COALESCE(a.id, '') AS a_id, COALESCE(a.resource_id, '') AS a_res, COALESCE(r.name, '') AS a_res_name, \
 COALESCE(a.starts_at, 0) AS a_start, COALESCE(a.ends_at, 0) AS a_end, COALESCE(a.state, '') AS a_state, \
 COALESCE(a.step_id, '') AS a_step \
 FROM ris_orders o \
 JOIN ris_patients p ON p.tenant_id = o.tenant_id AND p.id = o.patient \
 LEFT JOIN ris_procedures pr ON pr.tenant_id = o.tenant_id AND pr.code = o.procedure_code \
 LEFT JOIN ris_appointments a ON a.tenant_id = o.tenant_id AND a.order_id = o.id \
   AND a.state IN ('booked', 'arrived', 'in_progress', 'completed') \
 LEFT JOIN ris_resources r ON r.tenant_id = a.tenant_id AND r.id = a.resource_id";

pub(crate) fn order_row(row: &AnyRow) -> Result<Order, RisError> {
    let state = s(row, "state")?;
    let priority = s(row, "priority")?;
    let a_id = s(row, "a_id")?;
    let patient_name = s(row, "p_name")?;
    let procedure_name = s(row, "pr_name")?;
    let priority = Priority::parse(&priority)
        .ok_or_else(|| RisError::Database(format!("stored priority {priority:?}")))?;
    let appointment = if a_id.is_empty() {
        None
    } else {
        let a_state = s(row, "a_state")?;
        Some(Appointment {
            id: a_id,
            order_id: s(row, "id")?,
            resource_id: s(row, "a_res")?,
            resource_name: s(row, "a_res_name")?,
            starts_at: Time(n(row, "a_start")?),
            ends_at: Time(n(row, "a_end")?),
            state: AppointmentState::parse(&a_state).ok_or_else(|| {
                RisError::Database(format!("stored appointment state {a_state:?}"))
            })?,
            accession: s(row, "accession")?,
            patient_name: patient_name.clone(),
            procedure_name: procedure_name.clone(),
            priority,
            step_id: s(row, "a_step")?,
        })
    };
    Ok(Order {
        id: s(row, "id")?,
        accession: s(row, "accession")?,
        state: OrderState::parse(&state)
            .ok_or_else(|| RisError::Database(format!("stored order state {state:?}")))?,
        priority,
        reason: s(row, "reason")?,
        referring_physician: s(row, "referring")?,
        ordered_by: s(row, "ordered_by")?,
        patient: OrderPatient {
            id: s(row, "p_id")?,
            patient_id: s(row, "p_pid")?,
            issuer: s(row, "p_issuer")?,
            name: patient_name,
            birth_date: s(row, "p_birth")?,
            sex: s(row, "p_sex")?,
        },
        procedure: OrderProcedure {
            code: s(row, "pr_code")?,
            name: procedure_name,
            modality: s(row, "pr_modality")?,
            body_part: s(row, "pr_body")?,
            duration_min: n(row, "pr_duration")?,
            subspecialty: s(row, "pr_sub")?,
        },
        study_uid: s(row, "study_uid")?,
        site: s(row, "site")?,
        appointment,
        assigned_to: s(row, "assigned_to")?,
        assigned_group: s(row, "assigned_group")?,
        assignment_reason: s(row, "assignment_reason")?,
        claimed_by: s(row, "claimed_by")?,
        escalated_at: Time(n(row, "escalated_at")?),
        times: OrderTimes {
            ordered: Time(n(row, "ordered_at")?),
            scheduled: Time(n(row, "scheduled_at")?),
            arrived: Time(n(row, "arrived_at")?),
            started: Time(n(row, "started_at")?),
            images_complete: Time(n(row, "images_at")?),
            preliminary: Time(n(row, "preliminary_at")?),
            final_: Time(n(row, "final_at")?),
        },
        created_at: Time(n(row, "ordered_at")?),
        updated_at: Time(n(row, "updated_at")?),
        history: None,
    })
}

/// The column stamped when an order reaches a state (the first time).
fn milestone(state: OrderState) -> Option<&'static str> {
    match state {
        OrderState::Scheduled => Some("scheduled_at"),
        OrderState::Arrived => Some("arrived_at"),
        OrderState::InProgress => Some("started_at"),
        OrderState::ImagesComplete => Some("images_at"),
        OrderState::Preliminary => Some("preliminary_at"),
        OrderState::Final => Some("final_at"),
        _ => None,
    }
}

impl Ris {
    pub fn new(index: Index, events: EventBus, audit: Audit) -> Self {
        Ris {
            index,
            events,
            audit,
        }
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub(crate) async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, RisError> {
        self.index
            .pool()
            .acquire()
            .await
            .map_err(RisError::db("acquire"))
    }

    /// Send what a committed transaction did.
    pub(crate) fn emit(&self, effects: Effects) {
        for r in effects.records {
            self.audit.record(r);
        }
        for e in effects.events {
            self.events.publish(e);
        }
    }

    /// One order, with its history when `history` is set.
    pub async fn order(
        &self,
        tenant: &TenantId,
        id: &str,
        history: bool,
    ) -> Result<Order, RisError> {
        let mut conn = self.conn().await?;
        let mut o = order_in(&mut conn, tenant, id).await?;
        if history {
            let rows = sqlx::query(
                "SELECT at, from_state, to_state, actor, detail FROM ris_order_history \
                 WHERE tenant_id = $1 AND order_id = $2 ORDER BY seq",
            )
            .bind(tenant.as_str())
            .bind(id)
            .fetch_all(&mut *conn)
            .await
            .map_err(RisError::db("order history"))?;
            o.history = Some(
                rows.iter()
                    .map(|r| {
                        Ok(HistoryEntry {
                            at: Time(n(r, "at")?),
                            from: s(r, "from_state")?,
                            to: s(r, "to_state")?,
                            actor: s(r, "actor")?,
                            detail: s(r, "detail")?,
                        })
                    })
                    .collect::<Result<_, RisError>>()?,
            );
        }
        Ok(o)
    }

    /// Move an order to `to` inside a transaction: check, stamp, history, audit, event.
    pub(crate) async fn transition_in(
        conn: &mut AnyConnection,
        fx: &mut Effects,
        tenant: &TenantId,
        order_id: &str,
        to: OrderState,
        actor: &Actor,
        detail: &str,
    ) -> Result<OrderState, RisError> {
        let row =
            sqlx::query("SELECT state, accession FROM ris_orders WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_str())
                .bind(order_id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(RisError::db("order state"))?
                .ok_or_else(|| RisError::NotFound(format!("order {order_id}")))?;
        let from_s = s(&row, "state")?;
        let accession = s(&row, "accession")?;
        let from = OrderState::parse(&from_s)
            .ok_or_else(|| RisError::Database(format!("stored order state {from_s:?}")))?;
        from.transition(to)?;
        let now = now_millis();
        let stamp = milestone(to)
            .map(|c| format!(", {c} = CASE WHEN {c} = 0 THEN $2 ELSE {c} END"))
            .unwrap_or_default();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE ris_orders SET state = $1, updated_at = $2{stamp} WHERE tenant_id = $3 AND id = $4"
        )))
        .bind(to.as_str())
        .bind(now)
        .bind(tenant.as_str())
        .bind(order_id)
        .execute(&mut *conn)
        .await
        .map_err(RisError::db("order transition"))?;
        sqlx::query(
            "INSERT INTO ris_order_history (tenant_id, order_id, seq, at, from_state, to_state, actor, detail) \
             VALUES ($1, $2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM ris_order_history WHERE tenant_id = $1 AND order_id = $2), \
             $3, $4, $5, $6, $7)",
        )
        .bind(tenant.as_str())
        .bind(order_id)
        .bind(now)
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(actor.actor.as_str())
        .bind(detail)
        .execute(&mut *conn)
        .await
        .map_err(RisError::db("order history"))?;
        fx.audit(
            tenant,
            actor,
            "ris.order.transition",
            format!("order {order_id} accession {accession}"),
            format!(
                "{from} -> {to}{}",
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(": {detail}")
                }
            ),
        );
        fx.event(Event::OrderChanged {
            tenant: tenant.clone(),
            order_id: order_id.to_owned(),
            accession,
            from: from.as_str().to_owned(),
            to: to.as_str().to_owned(),
        });
        Ok(from)
    }

    /// Move an order to `to` (the REST transition): returns the order after the move.
    pub async fn transition(
        &self,
        tenant: &TenantId,
        order_id: &str,
        to: OrderState,
        actor: &Actor,
        detail: &str,
    ) -> Result<Order, RisError> {
        let tenant2 = tenant.clone();
        let actor2 = actor.clone();
        write_tx!(self, |c, fx| {
            if matches!(
                to,
                OrderState::Preliminary | OrderState::Final | OrderState::Amended
            ) {
                // an illegal move says so before the claim is looked at
                order_in(c, &tenant2, order_id)
                    .await?
                    .state
                    .transition(to)?;
                reading::require_claim(c, &tenant2, order_id, &actor2).await?;
            }
            Ris::transition_in(c, fx, &tenant2, order_id, to, &actor2, detail).await?;
            match to {
                OrderState::Preliminary => {
                    reading::stamp_reader(c, &tenant2, order_id, "preliminary_by", &actor2.user)
                        .await?
                }
                OrderState::Final => {
                    reading::stamp_reader(c, &tenant2, order_id, "final_by", &actor2.user).await?
                }
                _ => {}
            }
            sync_appointment(c, &tenant2, order_id, to).await?;
            Ok(())
        })
        .await?;
        if to == OrderState::ImagesComplete {
            self.route_order(tenant, order_id).await?;
        }
        self.order(tenant, order_id, false).await
    }

    /// The tenant's routing configuration (rules and STAT escalation time).
    pub async fn routing_config(&self, tenant: &TenantId) -> Result<RoutingConfig, RisError> {
        let mut conn = self.conn().await?;
        match setting(&mut conn, tenant, "routing").await? {
            Some(v) => serde_json::from_str(&v)
                .map_err(|e| RisError::Database(format!("stored routing configuration: {e}"))),
            None => Ok(RoutingConfig::default()),
        }
    }

    pub async fn set_routing_config(
        &self,
        tenant: &TenantId,
        cfg: &RoutingConfig,
        actor: &Actor,
    ) -> Result<(), RisError> {
        if cfg.stat_escalation_minutes < 1 || cfg.stat_escalation_minutes > 24 * 60 {
            return Err(RisError::Invalid(
                "stat_escalation_minutes must be between 1 and 1440".into(),
            ));
        }
        if let Some(r) = cfg.rules.iter().find(|r| r.name.trim().is_empty()) {
            return Err(RisError::Invalid(format!(
                "every rule needs a name ({r:?})"
            )));
        }
        let json = serde_json::to_string(cfg).map_err(|e| RisError::Invalid(e.to_string()))?;
        let tenant = tenant.clone();
        let actor = actor.clone();
        let n = cfg.rules.len();
        write_tx!(self, |c, fx| {
            put_setting(c, &tenant, "routing", &json).await?;
            fx.audit(
                &tenant,
                &actor,
                "ris.routing.update",
                "routing rules".into(),
                format!("rules={n}"),
            );
            Ok(())
        })
        .await
    }
}

/// The row a `SELECT … WHERE tenant_id = $1 AND id = $2`-shaped query finds, or
/// `NotFound(what id)`.
pub(crate) async fn fetch_by_id(
    conn: &mut AnyConnection,
    sql: String,
    tenant: &TenantId,
    id: &str,
    what: &'static str,
) -> Result<AnyRow, RisError> {
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(RisError::db(what))?
        .ok_or_else(|| RisError::NotFound(format!("{what} {id}")))
}

/// One order inside a connection or transaction.
pub(crate) async fn order_in(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    id: &str,
) -> Result<Order, RisError> {
    let row = fetch_by_id(
        conn,
        format!("{ORDER_SELECT} WHERE o.tenant_id = $1 AND o.id = $2"),
        tenant,
        id,
        "order",
    )
    .await?;
    order_row(&row)
}

/// Keep the active appointment in step with its order.
pub(crate) async fn sync_appointment(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    order_id: &str,
    to: OrderState,
) -> Result<(), RisError> {
    let (state, from): (&str, &[&str]) = match to {
        OrderState::Arrived => ("arrived", &["booked", "in_progress"]),
        OrderState::InProgress => ("in_progress", &["booked", "arrived"]),
        OrderState::ImagesComplete => ("completed", &["booked", "arrived", "in_progress"]),
        OrderState::Cancelled => ("cancelled", &["booked", "arrived", "in_progress"]),
        _ => return Ok(()),
    };
    let list = from
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE ris_appointments SET state = $1 WHERE tenant_id = $2 AND order_id = $3 AND state IN ({list})"
    )))
    .bind(state)
    .bind(tenant.as_str())
    .bind(order_id)
    .execute(&mut *conn)
    .await
    .map_err(RisError::db("appointment state"))?;
    Ok(())
}

pub(crate) async fn setting(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    name: &str,
) -> Result<Option<String>, RisError> {
    let row = sqlx::query("SELECT value FROM ris_settings WHERE tenant_id = $1 AND name = $2")
        .bind(tenant.as_str())
        .bind(name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(RisError::db("setting"))?;
    row.map(|r| s(&r, "value")).transpose()
}

pub(crate) async fn put_setting(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    name: &str,
    value: &str,
) -> Result<(), RisError> {
    sqlx::query(
        "INSERT INTO ris_settings (tenant_id, name, value) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id, name) DO UPDATE SET value = $3",
    )
    .bind(tenant.as_str())
    .bind(name)
    .bind(value)
    .execute(&mut *conn)
    .await
    .map_err(RisError::db("setting"))?;
    Ok(())
}

/// The next value of a per-tenant counter (accession numbers, step ids).
pub(crate) async fn next_counter(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    name: &str,
) -> Result<i64, RisError> {
    let current = setting(conn, tenant, name).await?;
    let next = current
        .as_deref()
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0)
        + 1;
    put_setting(conn, tenant, name, &next.to_string()).await?;
    Ok(next)
}

/// A shared handle.
pub type SharedRis = Arc<Ris>;
