//! Reading worklists: routing of cases whose images are complete ([`crate::routing`]),
//! claim/unclaim so that no two radiologists read one case, the lists per radiologist and
//! group, and STAT escalation.

use radris_core::TenantId;
use radris_core::events::Event;
use sqlx::AnyConnection;

use super::{Actor, ORDER_SELECT, Ris, RisError, n, order_row, s};
use crate::Priority;
use crate::model::*;
use crate::routing::{Case, Reader, route};
use crate::workflow::OrderState;

/// The reader must hold the case before reporting on it.
pub(crate) async fn require_claim(
    c: &mut AnyConnection,
    tenant: &TenantId,
    order_id: &str,
    actor: &Actor,
) -> Result<(), RisError> {
    if actor.user.is_empty() {
        return Ok(());
    }
    let row = sqlx::query("SELECT claimed_by FROM ris_orders WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.as_str())
        .bind(order_id)
        .fetch_optional(&mut *c)
        .await
        .map_err(RisError::db("claim check"))?
        .ok_or_else(|| RisError::NotFound(format!("order {order_id}")))?;
    let holder = s(&row, "claimed_by")?;
    if holder == actor.user {
        Ok(())
    } else if holder.is_empty() {
        Err(RisError::conflict("claim the case before reporting on it"))
    } else {
        Err(RisError::conflict(format!(
            "the case is claimed by {holder}"
        )))
    }
}

pub(crate) async fn stamp_reader(
    c: &mut AnyConnection,
    tenant: &TenantId,
    order_id: &str,
    column: &'static str,
    user: &str,
) -> Result<(), RisError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE ris_orders SET {column} = $1 WHERE tenant_id = $2 AND id = $3"
    )))
    .bind(user)
    .bind(tenant.as_str())
    .bind(order_id)
    .execute(&mut *c)
    .await
    .map_err(RisError::db("stamp reader"))?;
    Ok(())
}

impl Ris {
    /// Radiologists on shift at `at` with their subspecialties and open work.
    pub async fn readers_on_shift(
        &self,
        tenant: &TenantId,
        at: Time,
    ) -> Result<Vec<Reader>, RisError> {
        let mut conn = self.conn().await?;
        let rows = sqlx::query(
            "SELECT DISTINCT r.user_name, r.subspecialties FROM ris_resources r \
             JOIN ris_shifts sh ON sh.tenant_id = r.tenant_id AND sh.resource_id = r.id \
             WHERE r.tenant_id = $1 AND r.kind = 'staff' AND r.user_name <> '' AND sh.starts_at <= $2 AND sh.ends_at > $2",
        )
        .bind(tenant.as_str())
        .bind(at.0)
        .fetch_all(&mut *conn)
        .await
        .map_err(RisError::db("readers on shift"))?;
        let open = sqlx::query(
            "SELECT CASE WHEN claimed_by <> '' THEN claimed_by ELSE assigned_to END AS reader, priority FROM ris_orders \
             WHERE tenant_id = $1 AND state IN ('images_complete', 'preliminary') AND (claimed_by <> '' OR assigned_to <> '')",
        )
        .bind(tenant.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(RisError::db("open work"))?;
        let mut readers = Vec::new();
        for r in &rows {
            let user = s(r, "user_name")?;
            let mut work = Vec::new();
            for o in &open {
                if s(o, "reader")? == user {
                    work.push(Priority::parse(&s(o, "priority")?).unwrap_or(Priority::Routine));
                }
            }
            readers.push(Reader {
                subspecialties: s(r, "subspecialties")?
                    .split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
                    .collect(),
                user,
                open: work,
            });
        }
        Ok(readers)
    }

    /// Route a case whose images are complete; no-op in other states.
    pub async fn route_order(&self, tenant: &TenantId, order_id: &str) -> Result<(), RisError> {
        let order = self.order(tenant, order_id, false).await?;
        if order.state != OrderState::ImagesComplete || !order.claimed_by.is_empty() {
            return Ok(());
        }
        let cfg = self.routing_config(tenant).await?;
        let readers = self.readers_on_shift(tenant, Time::now()).await?;
        let case = Case {
            modality: order.procedure.modality.clone(),
            body_part: order.procedure.body_part.clone(),
            priority: order.priority,
            subspecialty: order.procedure.subspecialty.clone(),
        };
        let a = route(&cfg.rules, &case, &readers);
        let tenant2 = tenant.clone();
        write_tx!(self, |c, fx| {
            sqlx::query(
                "UPDATE ris_orders SET assigned_to = $1, assigned_group = $2, assignment_reason = $3, updated_at = $4 \
                 WHERE tenant_id = $5 AND id = $6",
            )
            .bind(a.user.as_str())
            .bind(a.group.as_str())
            .bind(a.reason.as_str())
            .bind(super::now_millis())
            .bind(tenant2.as_str())
            .bind(order_id)
            .execute(&mut *c)
            .await
            .map_err(RisError::db("assign"))?;
            fx.audit(
                &tenant2,
                &Actor::system(),
                "ris.reading.assign",
                format!("order {order_id} accession {}", order.accession),
                a.reason.clone(),
            );
            fx.event(Event::ReadingAssigned {
                tenant: tenant2.clone(),
                order_id: order_id.to_owned(),
                user: a.user.clone(),
                group: a.group.clone(),
            });
            Ok(())
        })
        .await
    }

    /// A reading worklist. `scope`: `mine` (claimed by or assigned to `user`), `all`, or
    /// `group:<name>`. Escalated cases first, then by priority, then oldest images first.
    pub async fn reading_list(
        &self,
        tenant: &TenantId,
        user: &str,
        f: &ReadingFilter,
    ) -> Result<Vec<Order>, RisError> {
        let mut sql = format!("{ORDER_SELECT} WHERE o.tenant_id = $1");
        let mut binds: Vec<String> = vec![tenant.as_str().to_owned()];
        let mut add = |sql: &mut String, clause: &str, v: &str| {
            binds.push(v.to_owned());
            sql.push_str(&clause.replace("$?", &format!("${}", binds.len())));
        };
        let states: Vec<OrderState> =
            match f.state.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                Some(list) => list
                    .split(',')
                    .map(|v| {
                        OrderState::parse(v.trim())
                            .ok_or_else(|| RisError::Invalid(format!("unknown state {v:?}")))
                    })
                    .collect::<Result<_, _>>()?,
                None => vec![OrderState::ImagesComplete, OrderState::Preliminary],
            };
        let list = states
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        sql.push_str(&format!(" AND o.state IN ({list})"));
        match f.scope.as_deref().unwrap_or("mine") {
            "all" => {}
            "mine" => {
                add(&mut sql, " AND (o.claimed_by = $?", user);
                add(
                    &mut sql,
                    " OR (o.claimed_by = '' AND o.assigned_to = $?))",
                    user,
                );
            }
            g if g.starts_with("group:") => {
                add(&mut sql, " AND o.assigned_group = $?", &g["group:".len()..])
            }
            other => {
                return Err(RisError::Invalid(format!(
                    "scope {other:?}: use mine, all or group:<name>"
                )));
            }
        }
        if let Some(m) = f.modality.as_deref().filter(|v| !v.is_empty()) {
            add(&mut sql, " AND pr.modality = $?", &m.to_ascii_uppercase());
        }
        if let Some(b) = f.body_part.as_deref().filter(|v| !v.is_empty()) {
            add(&mut sql, " AND pr.body_part = $?", &b.to_ascii_uppercase());
        }
        if let Some(p) = f.priority.as_deref().filter(|v| !v.is_empty()) {
            let p = Priority::parse(p)
                .ok_or_else(|| RisError::Invalid(format!("unknown priority {p:?}")))?;
            add(&mut sql, " AND o.priority = $?", p.as_str());
        }
        if let Some(site) = f.site.as_deref().filter(|v| !v.is_empty()) {
            add(&mut sql, " AND o.site = $?", site);
        }
        sql.push_str(
            " ORDER BY CASE WHEN o.escalated_at > 0 THEN 0 ELSE 1 END, \
             CASE o.priority WHEN 'stat' THEN 0 WHEN 'urgent' THEN 1 ELSE 2 END, o.images_at, o.id LIMIT 500",
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in &binds {
            q = q.bind(b.as_str());
        }
        let mut conn = self.conn().await?;
        let rows = q
            .fetch_all(&mut *conn)
            .await
            .map_err(RisError::db("reading list"))?;
        rows.iter().map(order_row).collect()
    }

    /// Claim a case for `actor`: refused (409) when someone else holds it or it does not
    /// await reading.
    pub async fn claim(
        &self,
        tenant: &TenantId,
        order_id: &str,
        actor: &Actor,
    ) -> Result<Order, RisError> {
        let tenant2 = tenant.clone();
        let actor2 = actor.clone();
        write_tx!(self, |c, fx| {
            let taken = sqlx::query(
                "UPDATE ris_orders SET claimed_by = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4 \
                 AND (claimed_by = '' OR claimed_by = $1) AND state IN ('images_complete', 'preliminary')",
            )
            .bind(actor2.user.as_str())
            .bind(super::now_millis())
            .bind(tenant2.as_str())
            .bind(order_id)
            .execute(&mut *c)
            .await
            .map_err(RisError::db("claim"))?
            .rows_affected();
            if taken == 0 {
                let o = super::order_in(c, &tenant2, order_id).await?;
                return Err(if !o.state.awaits_reading() {
                    RisError::conflict(format!("order {} is {} and does not await reading", o.accession, o.state))
                } else {
                    RisError::conflict(format!("already claimed by {}", o.claimed_by))
                });
            }
            fx.audit(&tenant2, &actor2, "ris.reading.claim", format!("order {order_id}"), String::new());
            Ok(())
        })
        .await?;
        self.order(tenant, order_id, false).await
    }

    /// Give a claimed case back (only its holder can).
    pub async fn unclaim(
        &self,
        tenant: &TenantId,
        order_id: &str,
        actor: &Actor,
    ) -> Result<Order, RisError> {
        let tenant2 = tenant.clone();
        let actor2 = actor.clone();
        write_tx!(self, |c, fx| {
            let o = super::order_in(c, &tenant2, order_id).await?;
            if o.claimed_by != actor2.user {
                return Err(RisError::conflict(if o.claimed_by.is_empty() {
                    "the case is not claimed".to_owned()
                } else {
                    format!("the case is claimed by {}", o.claimed_by)
                }));
            }
            sqlx::query("UPDATE ris_orders SET claimed_by = '', updated_at = $1 WHERE tenant_id = $2 AND id = $3")
                .bind(super::now_millis())
                .bind(tenant2.as_str())
                .bind(order_id)
                .execute(&mut *c)
                .await
                .map_err(RisError::db("unclaim"))?;
            fx.audit(&tenant2, &actor2, "ris.reading.unclaim", format!("order {order_id}"), String::new());
            Ok(())
        })
        .await?;
        self.order(tenant, order_id, false).await
    }

    /// Escalate STAT cases unread longer than the tenant allows (once each); returns how many
    /// were escalated. Run periodically.
    pub async fn escalate_overdue(&self, tenant: &TenantId, now: Time) -> Result<usize, RisError> {
        let cfg = self.routing_config(tenant).await?;
        let limit = now.0 - cfg.stat_escalation_minutes * 60_000;
        let tenant2 = tenant.clone();
        write_tx!(self, |c, fx| {
            let rows = sqlx::query(
                "SELECT id, accession, images_at FROM ris_orders WHERE tenant_id = $1 AND priority = 'stat' \
                 AND state = 'images_complete' AND escalated_at = 0 AND images_at > 0 AND images_at <= $2",
            )
            .bind(tenant2.as_str())
            .bind(limit)
            .fetch_all(&mut *c)
            .await
            .map_err(RisError::db("overdue STAT"))?;
            for r in &rows {
                let (id, accession) = (s(r, "id")?, s(r, "accession")?);
                let waited = (now.0 - n(r, "images_at")?) / 60_000;
                sqlx::query("UPDATE ris_orders SET escalated_at = $1, updated_at = $1 WHERE tenant_id = $2 AND id = $3")
                    .bind(now.0)
                    .bind(tenant2.as_str())
                    .bind(id.as_str())
                    .execute(&mut *c)
                    .await
                    .map_err(RisError::db("escalate"))?;
                fx.audit(
                    &tenant2,
                    &Actor::system(),
                    "ris.reading.escalate",
                    format!("order {id} accession {accession}"),
                    format!("STAT unread for {waited} min (limit {} min)", cfg.stat_escalation_minutes),
                );
                fx.event(Event::StatEscalated { tenant: tenant2.clone(), order_id: id, accession });
            }
            Ok(rows.len())
        })
        .await
    }

    /// Tenants that have RIS orders (for periodic jobs).
    pub async fn tenants(&self) -> Result<Vec<TenantId>, RisError> {
        let mut conn = self.conn().await?;
        let rows = sqlx::query("SELECT DISTINCT tenant_id FROM ris_orders")
            .fetch_all(&mut *conn)
            .await
            .map_err(RisError::db("tenants"))?;
        rows.iter()
            .filter_map(|r| s(r, "tenant_id").ok())
            .map(|t| TenantId::parse(&t).map_err(|e| RisError::Database(e.to_string())))
            .collect()
    }
}
