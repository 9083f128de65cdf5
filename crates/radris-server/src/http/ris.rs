//! The RIS REST API under `/api/v1/ris` (contract: `docs/ris-api.md`). Thin handlers over
//! `radris_ris::Ris`: the tenant and the acting user come from the principal; the auth
//! middleware has already decided the Cedar action of the route ([`action_of`]) and audits
//! the request; the RIS audits each change it makes and publishes the order's events.
//!
//! `POST /orders/{id}/transition` is let through the middleware as `viewWorkflow`; the
//! handler decides `readCase` (preliminary, final, amended) or `schedule` (the rest) once it
//! has read the target state.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use radris_auth::Principal;
use radris_auth::policy::{AccessRequest, Action, Resource as PolicyResource};
use radris_ris::model::*;
use radris_ris::service::OrderQuery;
use radris_ris::workflow::OrderState;
use radris_ris::{Actor, RisError};
use serde::Deserialize;

use super::AppState;
use super::auth::Authz;
use super::problem::{ApiError, problem_response};
use super::rest::ApiJson;

/// The Cedar action of a RIS route (`route` without the `/api/v1/ris` prefix).
pub fn action_of(method: &axum::http::Method, route: &str) -> Action {
    use axum::http::Method;
    let read = method == Method::GET || method == Method::HEAD;
    match route {
        "/analytics" => Action::Analytics,
        _ if read => Action::ViewWorkflow,
        "/orders/{id}/transition" => Action::ViewWorkflow,
        "/patients/{id}/merge" | "/patients/{id}/links" => Action::Reconcile,
        r if r.starts_with("/reconciliation") => Action::Reconcile,
        r if r.starts_with("/patients") || r.starts_with("/orders") => Action::OrderEntry,
        r if r.starts_with("/appointments") || r.starts_with("/schedule") => Action::Schedule,
        r if r.starts_with("/reading") => Action::ReadCase,
        _ => Action::ConfigureWorkflow,
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/ris/patients", get(patients).post(create_patient))
        .route(
            "/api/v1/ris/patients/{id}",
            get(patient).patch(change_patient),
        )
        .route("/api/v1/ris/patients/{id}/merge", post(merge_patient))
        .route("/api/v1/ris/patients/{id}/links", post(link_patient))
        .route("/api/v1/ris/procedures", get(procedures))
        .route("/api/v1/ris/procedures/{code}", put(put_procedure))
        .route("/api/v1/ris/orders", get(orders).post(create_order))
        .route("/api/v1/ris/orders/{id}", get(order).patch(change_order))
        .route("/api/v1/ris/orders/{id}/cancel", post(cancel_order))
        .route("/api/v1/ris/orders/{id}/transition", post(transition))
        .route(
            "/api/v1/ris/resources",
            get(resources).post(create_resource),
        )
        .route("/api/v1/ris/shifts", get(shifts).post(create_shift))
        .route("/api/v1/ris/appointments", get(appointments).post(book))
        .route("/api/v1/ris/appointments/{id}/arrive", post(arrive))
        .route("/api/v1/ris/appointments/{id}/no-show", post(no_show))
        .route(
            "/api/v1/ris/appointments/{id}/cancel",
            post(cancel_appointment),
        )
        .route("/api/v1/ris/schedule/auto", post(auto_schedule))
        .route("/api/v1/ris/worklist/technologist", get(technologist))
        .route("/api/v1/ris/reading", get(reading))
        .route("/api/v1/ris/reading/{id}/claim", post(claim))
        .route("/api/v1/ris/reading/{id}/unclaim", post(unclaim))
        .route("/api/v1/ris/routing", get(routing).put(put_routing))
        .route("/api/v1/ris/reconciliation", get(unmatched))
        .route(
            "/api/v1/ris/reconciliation/{study_uid}/resolve",
            post(resolve),
        )
        .route("/api/v1/ris/analytics", get(analytics))
}

/// A RIS failure as a problem document; a booking conflict lists the appointments in the
/// way (`conflicts`).
pub enum RisProblem {
    Ris(RisError),
    /// A refusal decided before the RIS was asked (policy, malformed input).
    Api(ApiError),
}

impl From<RisError> for RisProblem {
    fn from(e: RisError) -> Self {
        RisProblem::Ris(e)
    }
}

impl From<ApiError> for RisProblem {
    fn from(e: ApiError) -> Self {
        RisProblem::Api(e)
    }
}

impl IntoResponse for RisProblem {
    fn into_response(self) -> Response {
        let e = match self {
            RisProblem::Api(e) => return e.into_response(),
            RisProblem::Ris(e) => e,
        };
        match e {
            RisError::NotFound(what) => {
                problem_response(StatusCode::NOT_FOUND, format!("{what} not found"), None)
            }
            RisError::Invalid(m) => problem_response(StatusCode::UNPROCESSABLE_ENTITY, m, None),
            RisError::Conflict { message, conflicts } => problem_response(
                StatusCode::CONFLICT,
                message,
                Some((
                    "conflicts",
                    serde_json::to_value(conflicts).unwrap_or_default(),
                )),
            ),
            RisError::Illegal(t) => problem_response(StatusCode::CONFLICT, t.to_string(), None),
            other => ApiError::internal("the RIS", other).into_response(),
        }
    }
}

type R<T> = Result<Json<T>, RisProblem>;

/// Who calls a RIS or report route: the principal and the authorisation context the auth
/// middleware put in the request, and the actor the RIS records for them.
pub struct Caller {
    pub p: Principal,
    pub a: Authz,
    pub actor: Actor,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let (Some(p), Some(a)) = (
            parts.extensions.get::<Principal>().cloned(),
            parts.extensions.get::<Authz>().cloned(),
        ) else {
            return Err(ApiError::internal(
                "reading the caller",
                "the route is not behind the auth middleware",
            ));
        };
        let actor = Actor {
            actor: p.actor.clone(),
            user: p.user.clone(),
            source: a.source.clone(),
        };
        Ok(Caller { p, a, actor })
    }
}

fn ris(st: &AppState) -> &radris_ris::Ris {
    &st.ris
}

fn time_param(what: &str, v: Option<&str>, default: Time) -> Result<Time, RisProblem> {
    match v.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => Time::parse(v)
            .or_else(|| {
                chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|d| Time(d.and_utc().timestamp_millis()))
            })
            .ok_or_else(|| {
                RisError::Invalid(format!(
                    "{what} {v:?} is not an ISO 8601 time or YYYY-MM-DD date"
                ))
                .into()
            }),
    }
}

/// Midnight (UTC) of the day `t` falls on.
fn day_of(t: Time) -> Time {
    Time(t.0.div_euclid(86_400_000) * 86_400_000)
}

// ---- patients and catalogue

#[derive(Deserialize)]
struct PatientSearch {
    q: Option<String>,
    limit: Option<i64>,
}

async fn patients(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<PatientSearch>,
) -> R<serde_json::Value> {
    let items = ris(&st)
        .patients(
            &p.tenant,
            q.q.as_deref().unwrap_or_default(),
            q.limit.unwrap_or(50),
        )
        .await?;
    Ok(Json(serde_json::json!({ "items": items })))
}

async fn create_patient(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    ApiJson(body): ApiJson<NewPatient>,
) -> Result<(StatusCode, Json<Patient>), RisProblem> {
    let patient = ris(&st).create_patient(&p.tenant, &body, &who).await?;
    Ok((StatusCode::CREATED, Json(patient)))
}

async fn patient(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> R<Patient> {
    Ok(Json(ris(&st).patient(&p.tenant, &id).await?))
}

async fn change_patient(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PatientChange>,
) -> R<Patient> {
    Ok(Json(
        ris(&st).change_patient(&p.tenant, &id, &body, &who).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MergeBody {
    into: String,
}

async fn merge_patient(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<MergeBody>,
) -> R<serde_json::Value> {
    let (patient, orders, studies) = ris(&st)
        .merge_patient(&p.tenant, &id, &body.into, &who)
        .await?;
    Ok(Json(
        serde_json::json!({ "patient": patient, "orders_moved": orders, "studies_moved": studies }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkBody {
    other: String,
}

async fn link_patient(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<LinkBody>,
) -> R<Patient> {
    Ok(Json(
        ris(&st)
            .link_patients(&p.tenant, &id, &body.other, &who)
            .await?,
    ))
}

async fn procedures(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
) -> R<serde_json::Value> {
    Ok(Json(
        serde_json::json!({ "items": ris(&st).procedures(&p.tenant).await? }),
    ))
}

async fn put_procedure(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    Path(code): Path<String>,
    ApiJson(mut body): ApiJson<Procedure>,
) -> R<Procedure> {
    body.code = code;
    Ok(Json(ris(&st).put_procedure(&p.tenant, &body, &who).await?))
}

// ---- orders

#[derive(Deserialize)]
struct OrderSearch {
    state: Option<String>,
    patient: Option<String>,
    q: Option<String>,
    limit: Option<i64>,
}

/// A subject whose only clinical role is `referring` sees only their own orders.
async fn referrer_filter(
    st: &AppState,
    p: &Principal,
    a: &Authz,
) -> Result<Option<(String, String)>, RisProblem> {
    let roles = &a.subject.roles;
    let sees_all = roles.iter().any(|r| {
        matches!(
            r.as_str(),
            "admin" | "radiologist" | "technologist" | "service"
        )
    });
    if sees_all || !roles.iter().any(|r| r == "referring") {
        return Ok(None);
    }
    let person = st
        .users
        .profile(&p.tenant, &p.user)
        .await
        .map_err(|e| RisError::Database(e.to_string()))?
        .map(|prof| radris_auth::users::person_name_norm(&prof.person_name))
        .unwrap_or_default();
    Ok(Some((p.user.clone(), person)))
}

async fn orders(
    State(st): State<AppState>,
    Caller { p, a, .. }: Caller,
    Query(q): Query<OrderSearch>,
) -> R<serde_json::Value> {
    let states = q
        .state
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| {
            OrderState::parse(v).ok_or_else(|| RisError::Invalid(format!("unknown state {v:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let query = OrderQuery {
        states,
        patient: q.patient,
        q: q.q,
        referrer: referrer_filter(&st, &p, &a).await?,
        limit: q.limit.unwrap_or(200),
    };
    Ok(Json(
        serde_json::json!({ "items": ris(&st).orders(&p.tenant, &query).await? }),
    ))
}

async fn create_order(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    ApiJson(body): ApiJson<NewOrder>,
) -> Result<(StatusCode, Json<Order>), RisProblem> {
    let o = ris(&st).create_order(&p.tenant, &body, &who).await?;
    Ok((StatusCode::CREATED, Json(o)))
}

async fn order(
    State(st): State<AppState>,
    Caller { p, a, .. }: Caller,
    Path(id): Path<String>,
) -> R<Order> {
    let o = ris(&st).order(&p.tenant, &id, true).await?;
    if let Some((user, person)) = referrer_filter(&st, &p, &a).await? {
        let theirs = o.ordered_by == user
            || (!person.is_empty()
                && radris_core::person_name_key(&o.referring_physician) == person);
        if !theirs {
            return Err(RisError::NotFound(format!("order {id}")).into());
        }
    }
    Ok(Json(o))
}

async fn change_order(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<OrderChange>,
) -> R<Order> {
    Ok(Json(
        ris(&st).change_order(&p.tenant, &id, &body, &who).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    reason: String,
}

async fn cancel_order(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CancelBody>,
) -> R<Order> {
    Ok(Json(
        ris(&st)
            .cancel_order(&p.tenant, &id, &body.reason, &who)
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransitionBody {
    to: String,
    #[serde(default)]
    detail: String,
}

async fn transition(
    State(st): State<AppState>,
    Caller { p, a, actor: who }: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TransitionBody>,
) -> R<Order> {
    let to = OrderState::parse(body.to.trim())
        .ok_or_else(|| RisError::Invalid(format!("unknown state {:?}", body.to)))?;
    let needed = match to {
        OrderState::Preliminary | OrderState::Final | OrderState::Amended => Action::ReadCase,
        OrderState::Cancelled => Action::OrderEntry,
        _ => Action::Schedule,
    };
    let decision = st.policy.authorize(&AccessRequest {
        subject: &a.subject,
        action: needed,
        resource: &PolicyResource::Tenant(p.tenant.clone()),
        break_glass: &[],
    });
    if !decision.allowed {
        st.audit.record(radris_core::audit::AuditRecord {
            tenant: p.tenant.as_str().to_owned(),
            actor: p.actor.clone(),
            action: "ris.order.transition".into(),
            outcome: radris_core::audit::Outcome::Denied,
            resource: format!("order {id}"),
            detail: format!("policy denies {needed} (to {to})"),
            source: a.source.clone(),
        });
        return Err(ApiError::forbidden(format!(
            "the authorisation policies do not permit {} to {needed} (moving an order to {to})",
            a.subject.user
        ))
        .into());
    }
    let detail = body.detail.chars().take(200).collect::<String>();
    Ok(Json(
        ris(&st)
            .transition(&p.tenant, &id, to, &who, &detail)
            .await?,
    ))
}

// ---- resources, shifts, appointments

async fn resources(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
) -> R<serde_json::Value> {
    Ok(Json(
        serde_json::json!({ "items": ris(&st).resources(&p.tenant).await? }),
    ))
}

async fn create_resource(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    ApiJson(body): ApiJson<Resource>,
) -> Result<(StatusCode, Json<Resource>), RisProblem> {
    let r = ris(&st).create_resource(&p.tenant, &body, &who).await?;
    Ok((StatusCode::CREATED, Json(r)))
}

#[derive(Deserialize)]
struct Window {
    from: Option<String>,
    to: Option<String>,
    resource: Option<String>,
}

async fn shifts(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(w): Query<Window>,
) -> R<serde_json::Value> {
    let from = time_param("from", w.from.as_deref(), day_of(Time::now()))?;
    let to = time_param("to", w.to.as_deref(), Time(from.0 + 7 * 86_400_000))?;
    Ok(Json(
        serde_json::json!({ "items": ris(&st).shifts(&p.tenant, from, to).await? }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShiftBody {
    resource_id: String,
    starts_at: String,
    ends_at: String,
}

async fn create_shift(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    ApiJson(b): ApiJson<ShiftBody>,
) -> Result<(StatusCode, Json<Shift>), RisProblem> {
    let from = Time::parse(&b.starts_at)
        .ok_or_else(|| RisError::Invalid("starts_at is not an ISO 8601 time".into()))?;
    let to = Time::parse(&b.ends_at)
        .ok_or_else(|| RisError::Invalid("ends_at is not an ISO 8601 time".into()))?;
    let sh = ris(&st)
        .create_shift(&p.tenant, &b.resource_id, from, to, &who)
        .await?;
    Ok((StatusCode::CREATED, Json(sh)))
}

async fn appointments(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(w): Query<Window>,
) -> R<serde_json::Value> {
    let from = time_param("from", w.from.as_deref(), day_of(Time::now()))?;
    let to = time_param("to", w.to.as_deref(), Time(from.0 + 86_400_000))?;
    if to.0 - from.0 > 62 * 86_400_000 || to <= from {
        return Err(
            RisError::Invalid("the window must be positive and at most 62 days".into()).into(),
        );
    }
    let items = ris(&st)
        .appointments(
            &p.tenant,
            from,
            to,
            w.resource.as_deref().filter(|r| !r.is_empty()),
        )
        .await?;
    Ok(Json(serde_json::json!({ "items": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BookBody {
    order_id: String,
    resource_id: String,
    starts_at: String,
}

async fn book(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    ApiJson(b): ApiJson<BookBody>,
) -> Result<(StatusCode, Json<Appointment>), RisProblem> {
    let at = Time::parse(&b.starts_at).ok_or_else(|| {
        RisError::Invalid(format!(
            "starts_at {:?} is not an ISO 8601 time",
            b.starts_at
        ))
    })?;
    let appt = ris(&st)
        .book(&p.tenant, &b.order_id, &b.resource_id, at, &who)
        .await?;
    Ok((StatusCode::CREATED, Json(appt)))
}

async fn arrive(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    Path(id): Path<String>,
) -> R<Appointment> {
    Ok(Json(ris(&st).arrive(&p.tenant, &id, &who).await?))
}

async fn no_show(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    Path(id): Path<String>,
) -> R<Appointment> {
    Ok(Json(ris(&st).no_show(&p.tenant, &id, &who).await?))
}

async fn cancel_appointment(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    Path(id): Path<String>,
) -> R<Appointment> {
    Ok(Json(
        ris(&st).cancel_appointment(&p.tenant, &id, &who).await?,
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AutoBody {
    #[serde(default)]
    order_ids: Option<Vec<String>>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

async fn auto_schedule(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    body: axum::body::Bytes,
) -> R<AutoScheduled> {
    let b: AutoBody = if body.iter().all(u8::is_ascii_whitespace) {
        AutoBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| RisError::Invalid(format!("request body: {e}")))?
    };
    let from = time_param("from", b.from.as_deref(), Time::now())?;
    let to = time_param("to", b.to.as_deref(), Time(from.0 + 7 * 86_400_000))?;
    if to <= from || to.0 - from.0 > 31 * 86_400_000 {
        return Err(
            RisError::Invalid("the window must be positive and at most 31 days".into()).into(),
        );
    }
    let out = ris(&st)
        .auto_schedule(&p.tenant, b.order_ids.as_deref(), from, to, &who)
        .await?;
    Ok(Json(out))
}

#[derive(Deserialize)]
struct TechQuery {
    date: Option<String>,
    resource: Option<String>,
}

async fn technologist(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<TechQuery>,
) -> R<serde_json::Value> {
    let day = day_of(time_param("date", q.date.as_deref(), Time::now())?);
    let rows = ris(&st)
        .technologist_worklist(
            &p.tenant,
            day,
            q.resource.as_deref().filter(|r| !r.is_empty()),
        )
        .await?;
    let items: Vec<_> = rows
        .into_iter()
        .map(|(appointment, order)| serde_json::json!({ "appointment": appointment, "order": order }))
        .collect();
    Ok(Json(serde_json::json!({ "items": items })))
}

// ---- reading

async fn reading(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(f): Query<ReadingFilter>,
) -> R<serde_json::Value> {
    Ok(Json(
        serde_json::json!({ "items": ris(&st).reading_list(&p.tenant, &p.user, &f).await? }),
    ))
}

async fn claim(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    Path(id): Path<String>,
) -> R<Order> {
    Ok(Json(ris(&st).claim(&p.tenant, &id, &who).await?))
}

async fn unclaim(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    Path(id): Path<String>,
) -> R<Order> {
    Ok(Json(ris(&st).unclaim(&p.tenant, &id, &who).await?))
}

async fn routing(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
) -> R<RoutingConfig> {
    Ok(Json(ris(&st).routing_config(&p.tenant).await?))
}

async fn put_routing(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    ApiJson(body): ApiJson<RoutingConfig>,
) -> R<RoutingConfig> {
    ris(&st).set_routing_config(&p.tenant, &body, &who).await?;
    Ok(Json(body))
}

// ---- reconciliation and analytics

async fn unmatched(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
) -> R<serde_json::Value> {
    Ok(Json(
        serde_json::json!({ "items": ris(&st).unmatched(&p.tenant).await? }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    order_id: String,
}

async fn resolve(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    Path(study_uid): Path<String>,
    ApiJson(b): ApiJson<ResolveBody>,
) -> R<Order> {
    radris_core::Uid::parse(&study_uid)
        .map_err(|e| RisError::Invalid(format!("study UID: {e}")))?;
    Ok(Json(
        ris(&st)
            .resolve_unmatched(&p.tenant, &study_uid, &b.order_id, &who)
            .await?,
    ))
}

#[derive(Deserialize)]
struct AnalyticsQuery {
    from: Option<String>,
    to: Option<String>,
}

async fn analytics(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<AnalyticsQuery>,
) -> R<Analytics> {
    let to = time_param(
        "to",
        q.to.as_deref(),
        Time(day_of(Time::now()).0 + 86_400_000),
    )?;
    let from = time_param("from", q.from.as_deref(), Time(to.0 - 7 * 86_400_000))?;
    if to <= from || to.0 - from.0 > 366 * 86_400_000 {
        return Err(
            RisError::Invalid("the window must be positive and at most a year".into()).into(),
        );
    }
    Ok(Json(ris(&st).analytics(&p.tenant, from, to).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn routes_map_to_their_actions() {
        assert_eq!(action_of(&Method::GET, "/orders"), Action::ViewWorkflow);
        assert_eq!(action_of(&Method::GET, "/analytics"), Action::Analytics);
        assert_eq!(action_of(&Method::POST, "/orders"), Action::OrderEntry);
        assert_eq!(
            action_of(&Method::POST, "/orders/{id}/cancel"),
            Action::OrderEntry
        );
        assert_eq!(
            action_of(&Method::POST, "/orders/{id}/transition"),
            Action::ViewWorkflow
        );
        assert_eq!(action_of(&Method::POST, "/patients"), Action::OrderEntry);
        assert_eq!(
            action_of(&Method::POST, "/patients/{id}/merge"),
            Action::Reconcile
        );
        assert_eq!(
            action_of(&Method::POST, "/reconciliation/{study_uid}/resolve"),
            Action::Reconcile
        );
        assert_eq!(action_of(&Method::POST, "/appointments"), Action::Schedule);
        assert_eq!(action_of(&Method::POST, "/schedule/auto"), Action::Schedule);
        assert_eq!(
            action_of(&Method::POST, "/reading/{id}/claim"),
            Action::ReadCase
        );
        assert_eq!(
            action_of(&Method::PUT, "/routing"),
            Action::ConfigureWorkflow
        );
        assert_eq!(
            action_of(&Method::PUT, "/procedures/{code}"),
            Action::ConfigureWorkflow
        );
        assert_eq!(
            action_of(&Method::POST, "/shifts"),
            Action::ConfigureWorkflow
        );
        assert_eq!(
            action_of(&Method::POST, "/resources"),
            Action::ConfigureWorkflow
        );
    }
}
