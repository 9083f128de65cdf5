//! Resources (modalities with AE titles, rooms, staff with subspecialties), shifts,
//! appointments (the scheduled procedure steps) with conflict detection, and the
//! technologist's day.
//!
//! **Invariant:** a booking checks for overlaps after taking the resource's row lock (an
//! UPDATE of its version inside the write transaction), so two concurrent bookings of one
//! slot cannot both succeed on PostgreSQL; SQLite serialises writers anyway.

use radris_core::TenantId;
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use super::patients::check_text;
use super::{Actor, Ris, RisError, n, new_id, next_counter, s};
use crate::Priority;
use crate::model::*;
use crate::workflow::OrderState;

pub(crate) const APPOINTMENT_SELECT: &str = "SELECT a.id, a.order_id, a.resource_id, COALESCE(r.name, '') AS resource_name, \
 a.starts_at, a.ends_at, a.state, a.step_id, o.accession, o.priority, p.name AS patient_name, \
 COALESCE(pr.name, '') AS procedure_name \
 FROM ris_appointments a \
 JOIN ris_orders o ON o.tenant_id = a.tenant_id AND o.id = a.order_id \
 JOIN ris_patients p ON p.tenant_id = o.tenant_id AND p.id = o.patient \
 LEFT JOIN ris_procedures pr ON pr.tenant_id = o.tenant_id AND pr.code = o.procedure_code \
 LEFT JOIN ris_resources r ON r.tenant_id = a.tenant_id AND r.id = a.resource_id";

pub(crate) fn appointment_row(r: &AnyRow) -> Result<Appointment, RisError> {
    let state = s(r, "state")?;
    let priority = s(r, "priority")?;
    Ok(Appointment {
        id: s(r, "id")?,
        order_id: s(r, "order_id")?,
        resource_id: s(r, "resource_id")?,
        resource_name: s(r, "resource_name")?,
        starts_at: Time(n(r, "starts_at")?),
        ends_at: Time(n(r, "ends_at")?),
        state: AppointmentState::parse(&state)
            .ok_or_else(|| RisError::Database(format!("stored appointment state {state:?}")))?,
        accession: s(r, "accession")?,
        patient_name: s(r, "patient_name")?,
        procedure_name: s(r, "procedure_name")?,
        priority: Priority::parse(&priority)
            .ok_or_else(|| RisError::Database(format!("stored priority {priority:?}")))?,
        step_id: s(r, "step_id")?,
    })
}

const RESOURCE_SELECT: &str = "SELECT id, kind, name, modality, ae_title, station_name, site, subspecialties, \
 user_name, open_from, open_to FROM ris_resources";

fn resource_row(r: &AnyRow) -> Result<Resource, RisError> {
    let kind = s(r, "kind")?;
    Ok(Resource {
        id: s(r, "id")?,
        kind: match kind.as_str() {
            "modality" => ResourceKind::Modality,
            "room" => ResourceKind::Room,
            "staff" => ResourceKind::Staff,
            other => {
                return Err(RisError::Database(format!(
                    "stored resource kind {other:?}"
                )));
            }
        },
        name: s(r, "name")?,
        modality: s(r, "modality")?,
        ae_title: s(r, "ae_title")?,
        station_name: s(r, "station_name")?,
        site: s(r, "site")?,
        subspecialties: s(r, "subspecialties")?
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect(),
        user_name: s(r, "user_name")?,
        open_from: hhmm(n(r, "open_from")?),
        open_to: hhmm(n(r, "open_to")?),
    })
}

pub(crate) async fn resource_in(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    id: &str,
) -> Result<Resource, RisError> {
    let row = super::fetch_by_id(
        conn,
        format!("{RESOURCE_SELECT} WHERE tenant_id = $1 AND id = $2"),
        tenant,
        id,
        "resource",
    )
    .await?;
    resource_row(&row)
}

pub(crate) async fn appointment_in(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    id: &str,
) -> Result<Appointment, RisError> {
    let row = super::fetch_by_id(
        conn,
        format!("{APPOINTMENT_SELECT} WHERE a.tenant_id = $1 AND a.id = $2"),
        tenant,
        id,
        "appointment",
    )
    .await?;
    appointment_row(&row)
}

/// Minutes after midnight (UTC) of a time.
fn minute_of_day(ms: i64) -> i64 {
    ms.div_euclid(60_000).rem_euclid(24 * 60)
}

const DAY_MS: i64 = 24 * 3600 * 1000;

impl Ris {
    pub async fn resources(&self, tenant: &TenantId) -> Result<Vec<Resource>, RisError> {
        let mut conn = self.conn().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{RESOURCE_SELECT} WHERE tenant_id = $1 ORDER BY kind, name"
        )))
        .bind(tenant.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(RisError::db("resources"))?;
        rows.iter().map(resource_row).collect()
    }

    pub async fn create_resource(
        &self,
        tenant: &TenantId,
        r: &Resource,
        actor: &Actor,
    ) -> Result<Resource, RisError> {
        let name = check_text("name", &r.name, 64)?;
        if name.is_empty() {
            return Err(RisError::Invalid("name is required".into()));
        }
        let modality = check_text("modality", &r.modality, 16)?.to_ascii_uppercase();
        let ae = check_text("ae_title", &r.ae_title, 16)?;
        if r.kind == ResourceKind::Modality && (modality.is_empty() || ae.is_empty()) {
            return Err(RisError::Invalid(
                "a modality resource needs a modality and an AE title".into(),
            ));
        }
        if !ae.is_empty() {
            radris_core::AeTitle::parse(&ae)
                .map_err(|e| RisError::Invalid(format!("ae_title: {e}")))?;
        }
        let open_from = parse_hhmm(&r.open_from).ok_or_else(|| {
            RisError::Invalid(format!("open_from {:?} is not HH:MM", r.open_from))
        })?;
        let open_to = parse_hhmm(&r.open_to)
            .ok_or_else(|| RisError::Invalid(format!("open_to {:?} is not HH:MM", r.open_to)))?;
        if open_to <= open_from {
            return Err(RisError::Invalid("open_to must be after open_from".into()));
        }
        let subs = r
            .subspecialties
            .iter()
            .map(|v| check_text("subspecialty", v, 64))
            .collect::<Result<Vec<_>, _>>()?
            .join(",");
        let id = new_id();
        let tenant2 = tenant.clone();
        let actor2 = actor.clone();
        let r2 = r.clone();
        let id2 = id.clone();
        write_tx!(self, |c, fx| {
            if !ae.is_empty() {
                let taken = sqlx::query("SELECT id FROM ris_resources WHERE tenant_id = $1 AND ae_title = $2")
                    .bind(tenant2.as_str())
                    .bind(ae.as_str())
                    .fetch_optional(&mut *c)
                    .await
                    .map_err(RisError::db("resource lookup"))?;
                if taken.is_some() {
                    return Err(RisError::conflict(format!("AE title {ae} belongs to another resource")));
                }
            }
            sqlx::query(
                "INSERT INTO ris_resources (tenant_id, id, kind, name, modality, ae_title, station_name, site, \
                 subspecialties, user_name, open_from, open_to, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0)",
            )
            .bind(tenant2.as_str())
            .bind(id2.as_str())
            .bind(r2.kind.as_str())
            .bind(name.as_str())
            .bind(modality.as_str())
            .bind(ae.as_str())
            .bind(r2.station_name.trim())
            .bind(r2.site.trim())
            .bind(subs.as_str())
            .bind(r2.user_name.trim())
            .bind(open_from)
            .bind(open_to)
            .execute(&mut *c)
            .await
            .map_err(RisError::db("insert resource"))?;
            fx.audit(&tenant2, &actor2, "ris.resource.create", format!("resource {id2}"), format!("{} {name}", r2.kind.as_str()));
            Ok(())
        })
        .await?;
        let mut conn = self.conn().await?;
        resource_in(&mut conn, tenant, &id).await
    }

    pub async fn shifts(
        &self,
        tenant: &TenantId,
        from: Time,
        to: Time,
    ) -> Result<Vec<Shift>, RisError> {
        let mut conn = self.conn().await?;
        let rows = sqlx::query(
            "SELECT id, resource_id, starts_at, ends_at FROM ris_shifts WHERE tenant_id = $1 AND starts_at < $2 AND ends_at > $3 \
             ORDER BY starts_at",
        )
        .bind(tenant.as_str())
        .bind(to.0)
        .bind(from.0)
        .fetch_all(&mut *conn)
        .await
        .map_err(RisError::db("shifts"))?;
        rows.iter()
            .map(|r| {
                Ok(Shift {
                    id: s(r, "id")?,
                    resource_id: s(r, "resource_id")?,
                    starts_at: Time(n(r, "starts_at")?),
                    ends_at: Time(n(r, "ends_at")?),
                })
            })
            .collect()
    }

    pub async fn create_shift(
        &self,
        tenant: &TenantId,
        resource_id: &str,
        starts_at: Time,
        ends_at: Time,
        actor: &Actor,
    ) -> Result<Shift, RisError> {
        if ends_at <= starts_at || ends_at.0 - starts_at.0 > DAY_MS {
            return Err(RisError::Invalid(
                "a shift ends after it starts, within 24 hours".into(),
            ));
        }
        let id = new_id();
        let tenant2 = tenant.clone();
        let actor2 = actor.clone();
        let id2 = id.clone();
        write_tx!(self, |c, fx| {
            let r = resource_in(c, &tenant2, resource_id).await?;
            if r.kind != ResourceKind::Staff {
                return Err(RisError::Invalid(format!("resource {resource_id} is not staff")));
            }
            let overlap = sqlx::query(
                "SELECT id FROM ris_shifts WHERE tenant_id = $1 AND resource_id = $2 AND starts_at < $3 AND ends_at > $4",
            )
            .bind(tenant2.as_str())
            .bind(resource_id)
            .bind(ends_at.0)
            .bind(starts_at.0)
            .fetch_optional(&mut *c)
            .await
            .map_err(RisError::db("shift overlap"))?;
            if overlap.is_some() {
                return Err(RisError::conflict(format!("{} already has a shift then", r.name)));
            }
            sqlx::query("INSERT INTO ris_shifts (tenant_id, id, resource_id, starts_at, ends_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(tenant2.as_str())
                .bind(id2.as_str())
                .bind(resource_id)
                .bind(starts_at.0)
                .bind(ends_at.0)
                .execute(&mut *c)
                .await
                .map_err(RisError::db("insert shift"))?;
            fx.audit(&tenant2, &actor2, "ris.shift.create", format!("shift {id2}"), format!("resource {resource_id}"));
            Ok(())
        })
        .await?;
        Ok(Shift {
            id,
            resource_id: resource_id.to_owned(),
            starts_at,
            ends_at,
        })
    }

    pub async fn appointments(
        &self,
        tenant: &TenantId,
        from: Time,
        to: Time,
        resource: Option<&str>,
    ) -> Result<Vec<Appointment>, RisError> {
        let mut conn = self.conn().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{APPOINTMENT_SELECT} WHERE a.tenant_id = $1 AND a.starts_at < $2 AND a.ends_at > $3 \
             AND ($4 = '' OR a.resource_id = $4) ORDER BY a.starts_at, a.id"
        )))
        .bind(tenant.as_str())
        .bind(to.0)
        .bind(from.0)
        .bind(resource.unwrap_or_default())
        .fetch_all(&mut *conn)
        .await
        .map_err(RisError::db("appointments"))?;
        rows.iter().map(appointment_row).collect()
    }

    /// Book an order on a modality at `starts_at` (end = start + the procedure's duration).
    /// Refused (409, with the appointments in the way) on a double booking, outside the
    /// resource's opening hours, or on a modality of another kind; nothing is written then.
    pub async fn book(
        &self,
        tenant: &TenantId,
        order_id: &str,
        resource_id: &str,
        starts_at: Time,
        actor: &Actor,
    ) -> Result<Appointment, RisError> {
        let tenant2 = tenant.clone();
        let actor2 = actor.clone();
        let id = write_tx!(self, |c, fx| book_in(
            c,
            fx,
            &tenant2,
            order_id,
            resource_id,
            starts_at,
            &actor2
        )
        .await)
        .await?;
        let mut conn = self.conn().await?;
        appointment_in(&mut conn, tenant, &id).await
    }

    /// The patient arrived: appointment and order become `arrived`.
    pub async fn arrive(
        &self,
        tenant: &TenantId,
        appointment: &str,
        actor: &Actor,
    ) -> Result<Appointment, RisError> {
        self.appointment_action(
            tenant,
            appointment,
            actor,
            OrderState::Arrived,
            "arrived",
            &["booked"],
        )
        .await
    }

    /// The patient did not come: the slot is freed and the order goes back to `ordered`.
    pub async fn no_show(
        &self,
        tenant: &TenantId,
        appointment: &str,
        actor: &Actor,
    ) -> Result<Appointment, RisError> {
        self.appointment_action(
            tenant,
            appointment,
            actor,
            OrderState::Ordered,
            "no_show",
            &["booked"],
        )
        .await
    }

    /// The appointment is cancelled: the slot is freed and the order goes back to `ordered`.
    pub async fn cancel_appointment(
        &self,
        tenant: &TenantId,
        appointment: &str,
        actor: &Actor,
    ) -> Result<Appointment, RisError> {
        self.appointment_action(
            tenant,
            appointment,
            actor,
            OrderState::Ordered,
            "cancelled",
            &["booked", "arrived"],
        )
        .await
    }

    async fn appointment_action(
        &self,
        tenant: &TenantId,
        appointment: &str,
        actor: &Actor,
        order_to: OrderState,
        state: &'static str,
        allowed_from: &'static [&'static str],
    ) -> Result<Appointment, RisError> {
        let tenant2 = tenant.clone();
        let actor2 = actor.clone();
        write_tx!(self, |c, fx| {
            let a = appointment_in(c, &tenant2, appointment).await?;
            if !allowed_from.contains(&a.state.as_str()) {
                return Err(RisError::conflict(format!(
                    "appointment {appointment} is {} and cannot become {state}",
                    a.state.as_str()
                )));
            }
            // arrived → ordered (cancel after arrival) passes through scheduled
            let order = super::order_in(c, &tenant2, &a.order_id).await?;
            if order.state == OrderState::Arrived && order_to == OrderState::Ordered {
                Ris::transition_in(
                    c,
                    fx,
                    &tenant2,
                    &a.order_id,
                    OrderState::Scheduled,
                    &actor2,
                    state,
                )
                .await?;
            }
            Ris::transition_in(
                c,
                fx,
                &tenant2,
                &a.order_id,
                order_to,
                &actor2,
                &format!("appointment {state}"),
            )
            .await?;
            sqlx::query("UPDATE ris_appointments SET state = $1 WHERE tenant_id = $2 AND id = $3")
                .bind(state)
                .bind(tenant2.as_str())
                .bind(appointment)
                .execute(&mut *c)
                .await
                .map_err(RisError::db("appointment state"))?;
            fx.audit(
                &tenant2,
                &actor2,
                "ris.appointment.update",
                format!("appointment {appointment}"),
                format!("{} -> {state}", a.state.as_str()),
            );
            Ok(())
        })
        .await?;
        let mut conn = self.conn().await?;
        appointment_in(&mut conn, tenant, appointment).await
    }

    /// A technologist's day: the appointments of `day` (UTC midnight to midnight) with their
    /// orders, optionally of one resource.
    pub async fn technologist_worklist(
        &self,
        tenant: &TenantId,
        day_start: Time,
        resource: Option<&str>,
    ) -> Result<Vec<(Appointment, Order)>, RisError> {
        let appts = self
            .appointments(tenant, day_start, Time(day_start.0 + DAY_MS), resource)
            .await?;
        let mut conn = self.conn().await?;
        let mut out = Vec::with_capacity(appts.len());
        for a in appts {
            if matches!(a.state, AppointmentState::Cancelled) {
                continue;
            }
            let o = super::order_in(&mut conn, tenant, &a.order_id).await?;
            out.push((a, o));
        }
        Ok(out)
    }
}

/// The booking itself, inside a write transaction; returns the appointment id.
pub(crate) async fn book_in(
    c: &mut AnyConnection,
    fx: &mut super::Effects,
    tenant: &TenantId,
    order_id: &str,
    resource_id: &str,
    starts_at: Time,
    actor: &Actor,
) -> Result<String, RisError> {
    // the resource's row lock first: concurrent bookings of it wait here
    let locked = sqlx::query(
        "UPDATE ris_resources SET version = version + 1 WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.as_str())
    .bind(resource_id)
    .execute(&mut *c)
    .await
    .map_err(RisError::db("lock resource"))?
    .rows_affected();
    if locked == 0 {
        return Err(RisError::Invalid(format!("unknown resource {resource_id}")));
    }
    let resource = resource_in(c, tenant, resource_id).await?;
    let order = match super::order_in(c, tenant, order_id).await {
        Ok(o) => o,
        Err(RisError::NotFound(_)) => {
            return Err(RisError::Invalid(format!("unknown order {order_id}")));
        }
        Err(e) => return Err(e),
    };
    if order.state != OrderState::Ordered {
        return Err(RisError::conflict(format!(
            "order {} is {}; only an order in state ordered can be booked",
            order.accession, order.state
        )));
    }
    if resource.kind != ResourceKind::Modality {
        return Err(RisError::Invalid(format!(
            "{} is not a modality",
            resource.name
        )));
    }
    if !resource
        .modality
        .eq_ignore_ascii_case(&order.procedure.modality)
    {
        return Err(RisError::conflict(format!(
            "{} is a {} but {} needs {}",
            resource.name, resource.modality, order.procedure.name, order.procedure.modality
        )));
    }
    let duration = order.procedure.duration_min.max(1);
    let ends_at = Time(starts_at.0 + duration * 60_000);
    let open_from = parse_hhmm(&resource.open_from).unwrap_or(0);
    let open_to = parse_hhmm(&resource.open_to).unwrap_or(24 * 60);
    let day = starts_at.0.div_euclid(DAY_MS) * DAY_MS;
    let (start_min, end_min) = (minute_of_day(starts_at.0), (ends_at.0 - day) / 60_000);
    if start_min < open_from || end_min > open_to {
        return Err(RisError::conflict(format!(
            "{} is open {}–{} (UTC); {}–{} is outside",
            resource.name,
            resource.open_from,
            resource.open_to,
            hhmm(start_min),
            hhmm(end_min.min(24 * 60))
        )));
    }
    let clashes = sqlx::query(sqlx::AssertSqlSafe(format!(
        "{APPOINTMENT_SELECT} WHERE a.tenant_id = $1 AND a.resource_id = $2 AND a.starts_at < $3 AND a.ends_at > $4 \
         AND a.state IN ('booked', 'arrived', 'in_progress') ORDER BY a.starts_at"
    )))
    .bind(tenant.as_str())
    .bind(resource_id)
    .bind(ends_at.0)
    .bind(starts_at.0)
    .fetch_all(&mut *c)
    .await
    .map_err(RisError::db("booking conflicts"))?;
    if !clashes.is_empty() {
        let conflicts = clashes
            .iter()
            .map(appointment_row)
            .collect::<Result<Vec<_>, _>>()?;
        return Err(RisError::Conflict {
            message: format!(
                "{} is already booked then ({} appointment{} overlap)",
                resource.name,
                conflicts.len(),
                if conflicts.len() == 1 { "" } else { "s" }
            ),
            conflicts,
        });
    }
    let id = new_id();
    let step = next_counter(c, tenant, "step_seq").await?;
    let step_id = format!("SPS{step:07}");
    sqlx::query(
        "INSERT INTO ris_appointments (tenant_id, id, step_id, order_id, resource_id, starts_at, ends_at, state, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'booked', $8)",
    )
    .bind(tenant.as_str())
    .bind(id.as_str())
    .bind(step_id.as_str())
    .bind(order_id)
    .bind(resource_id)
    .bind(starts_at.0)
    .bind(ends_at.0)
    .bind(super::now_millis())
    .execute(&mut *c)
    .await
    .map_err(RisError::db("insert appointment"))?;
    sqlx::query("UPDATE ris_orders SET site = $1 WHERE tenant_id = $2 AND id = $3")
        .bind(resource.site.as_str())
        .bind(tenant.as_str())
        .bind(order_id)
        .execute(&mut *c)
        .await
        .map_err(RisError::db("order site"))?;
    Ris::transition_in(
        c,
        fx,
        tenant,
        order_id,
        OrderState::Scheduled,
        actor,
        &format!(
            "{} at {}",
            resource.name,
            starts_at.iso().unwrap_or_default()
        ),
    )
    .await?;
    fx.audit(
        tenant,
        actor,
        "ris.appointment.book",
        format!("appointment {id} order {order_id}"),
        format!(
            "{} {}–{}",
            resource.name,
            starts_at.iso().unwrap_or_default(),
            ends_at.iso().unwrap_or_default()
        ),
    );
    Ok(id)
}

fn auto_metrics(m: &crate::scheduler::Metrics) -> AutoScheduleMetrics {
    let r = |v: f64| (v * 10.0).round() / 10.0;
    AutoScheduleMetrics {
        utilisation: (m.utilisation * 1000.0).round() / 1000.0,
        mean_wait_min: r(m.mean_wait_min),
        stat_mean_wait_min: r(m.stat_mean_wait_min),
        objective: m.objective,
    }
}

impl Ris {
    /// Place a batch of `ordered` orders (all of them, or `order_ids`) on the modalities in
    /// [`from`, `to`) with the optimiser ([`crate::scheduler::optimise`]), then book each
    /// placement (each re-checked, so a slot taken meanwhile is reported, not double-booked).
    /// The answer compares the result with first-fit on the same batch.
    pub async fn auto_schedule(
        &self,
        tenant: &TenantId,
        order_ids: Option<&[String]>,
        from: Time,
        to: Time,
        actor: &Actor,
    ) -> Result<AutoScheduled, RisError> {
        use crate::scheduler as sch;
        let mut unplaced: Vec<NotPlaced> = Vec::new();
        let all = self
            .orders(
                tenant,
                &super::OrderQuery {
                    states: vec![OrderState::Ordered],
                    limit: 1000,
                    ..Default::default()
                },
            )
            .await?;
        let batch: Vec<Order> = match order_ids {
            None => all,
            Some(ids) => {
                for id in ids {
                    if !all.iter().any(|o| &o.id == id) {
                        unplaced.push(NotPlaced {
                            order_id: id.clone(),
                            reason: "not an order in state ordered".into(),
                        });
                    }
                }
                all.into_iter().filter(|o| ids.contains(&o.id)).collect()
            }
        };
        let resources: Vec<Resource> = self
            .resources(tenant)
            .await?
            .into_iter()
            .filter(|r| r.kind == ResourceKind::Modality)
            .collect();
        let (from_min, to_min) = (from.0.div_euclid(60_000), to.0.div_euclid(60_000));
        let problem = sch::Problem {
            resources: resources
                .iter()
                .map(|r| {
                    let (open_from, open_to) = (
                        parse_hhmm(&r.open_from).unwrap_or(0),
                        parse_hhmm(&r.open_to).unwrap_or(1440),
                    );
                    let mut open = Vec::new();
                    let mut day = from_min.div_euclid(sch::MINUTES_PER_DAY) * sch::MINUTES_PER_DAY;
                    while day < to_min {
                        let (a, b) = ((day + open_from).max(from_min), (day + open_to).min(to_min));
                        if a < b {
                            open.push((a, b));
                        }
                        day += sch::MINUTES_PER_DAY;
                    }
                    sch::Resource {
                        id: r.id.clone(),
                        modality: r.modality.clone(),
                        open,
                    }
                })
                .collect(),
            requests: batch
                .iter()
                .map(|o| sch::Request {
                    id: o.id.clone(),
                    modality: o.procedure.modality.clone(),
                    duration: o.procedure.duration_min.max(1),
                    priority: o.priority,
                    release: o.times.ordered.0.div_euclid(60_000).max(from_min),
                })
                .collect(),
            busy: self
                .appointments(tenant, from, to, None)
                .await?
                .into_iter()
                .filter(|a| a.state.holds_slot())
                .map(|a| sch::Busy {
                    resource_id: a.resource_id,
                    start: a.starts_at.0.div_euclid(60_000),
                    end: (a.ends_at.0 + 59_999).div_euclid(60_000),
                })
                .collect(),
            horizon_end: to_min,
        };
        let (schedule, metrics, baseline) = tokio::task::spawn_blocking(move || {
            let w = sch::Weights::default();
            let s = sch::optimise(&problem, &w, &sch::Options::default());
            let ff = sch::first_fit(&problem);
            (
                s.clone(),
                sch::evaluate(&problem, &s, &w),
                sch::evaluate(&problem, &ff, &w),
            )
        })
        .await
        .map_err(|e| RisError::Database(format!("scheduler: {e}")))?;
        for (id, reason) in schedule.unplaced {
            unplaced.push(NotPlaced {
                order_id: id,
                reason,
            });
        }
        let mut placements = schedule.placements;
        placements.sort_by_key(|p| p.start);
        let mut placed = Vec::new();
        for p in placements {
            match self
                .book(
                    tenant,
                    &p.request_id,
                    &p.resource_id,
                    Time(p.start * 60_000),
                    actor,
                )
                .await
            {
                Ok(a) => placed.push(a),
                Err(RisError::Conflict { message, .. }) | Err(RisError::Invalid(message)) => {
                    unplaced.push(NotPlaced {
                        order_id: p.request_id,
                        reason: message,
                    })
                }
                Err(RisError::Illegal(t)) => unplaced.push(NotPlaced {
                    order_id: p.request_id,
                    reason: t.to_string(),
                }),
                Err(e) => return Err(e),
            }
        }
        Ok(AutoScheduled {
            placed,
            unplaced,
            metrics: auto_metrics(&metrics),
            first_fit: auto_metrics(&baseline),
        })
    }
}
