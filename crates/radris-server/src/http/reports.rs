//! Reports under `/api/v1/reports` (contract: `docs/report-api.md`): templates, the report of
//! an order, autosave, signing with re-authentication, signature verification, critical
//! results, the PDF and the DICOM SR stored back into the archive. Thin handlers over
//! `radris_report::service::Reports`; the Cedar action of each route is [`action_of`].

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use radris_auth::Principal;
use radris_auth::policy::Action;
use radris_report::model::{ReportContent, ReportStatus};
use radris_report::service::{Report, ReportError};
use radris_ris::RisError;
use serde::Deserialize;

use super::AppState;
use super::problem::{ApiError, problem_response};
use super::rest::ApiJson;
use super::ris::Caller;

/// The Cedar action of a report route (`route` without the `/api/v1/reports` prefix).
pub fn action_of(method: &axum::http::Method, route: &str) -> Action {
    use axum::http::Method;
    let read = method == Method::GET || method == Method::HEAD;
    match route {
        "/templates/{id}" if !read => Action::ConfigureWorkflow,
        "/quality" => Action::Analytics,
        "/branding" if !read => Action::ConfigureWorkflow,
        "/{id}/critical/ack" => Action::OrderEntry,
        _ if read => Action::ViewWorkflow,
        _ => Action::ReadCase,
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/reports/templates", get(templates))
        .route(
            "/api/v1/reports/templates/{id}",
            get(template).put(put_template),
        )
        .route("/api/v1/reports", post(create))
        .route("/api/v1/reports/{id}", get(report).put(save))
        .route("/api/v1/reports/{id}/html", get(html))
        .route("/api/v1/reports/{id}/sign", post(sign))
        .route("/api/v1/reports/{id}/versions/{version}", get(version))
        .route(
            "/api/v1/reports/{id}/versions/{version}/verify",
            get(verify),
        )
        .route("/api/v1/reports/{id}/critical", post(flag_critical))
        .route("/api/v1/reports/{id}/critical/ack", post(ack_critical))
        .route("/api/v1/reports/{id}/pdf", get(pdf))
        .route("/api/v1/ris/orders/{id}/report", get(report_of_order))
        .route("/api/v1/reports/peer-reviews", get(peer_reviews))
        .route("/api/v1/reports/peer-reviews/assign", post(assign_reviews))
        .route("/api/v1/reports/peer-reviews/{id}", post(score_review))
        .route("/api/v1/reports/quality", get(quality))
        .route(
            "/api/v1/reports/peer-reviews/{id}/followup",
            post(follow_up),
        )
        .route("/api/v1/reports/branding", get(branding).put(put_branding))
}

/// A report failure as a problem document.
pub struct ReportProblem(ReportError);

impl From<ReportError> for ReportProblem {
    fn from(e: ReportError) -> Self {
        ReportProblem(e)
    }
}

impl From<RisError> for ReportProblem {
    fn from(e: RisError) -> Self {
        ReportProblem(ReportError::Workflow(e))
    }
}

impl IntoResponse for ReportProblem {
    fn into_response(self) -> Response {
        match self.0 {
            ReportError::NotFound(w) => {
                problem_response(StatusCode::NOT_FOUND, format!("{w} not found"), None)
            }
            ReportError::Invalid(m) => problem_response(StatusCode::UNPROCESSABLE_ENTITY, m, None),
            ReportError::Conflict(m) => problem_response(StatusCode::CONFLICT, m, None),
            ReportError::Incomplete(fields) => {
                let detail = format!("the report cannot be signed: {}", fields.join("; "));
                problem_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    detail,
                    Some(("problems", serde_json::json!(fields))),
                )
            }
            ReportError::Workflow(e) => super::ris::RisProblem::from(e).into_response(),
            other => ApiError::internal("the report service", other).into_response(),
        }
    }
}

type R<T> = Result<Json<T>, ReportProblem>;

async fn templates(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
) -> R<serde_json::Value> {
    Ok(Json(
        serde_json::json!({ "items": st.reports.templates(&p.tenant).await? }),
    ))
}

#[derive(Deserialize)]
struct VersionQuery {
    version: Option<i64>,
}

async fn template(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Result<Response, ReportProblem> {
    st.reports.templates(&p.tenant).await?;
    let (version, text) = st.reports.template_text(&p.tenant, &id, q.version).await?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "application/xhtml+xml; charset=utf-8".to_owned(),
            ),
            (
                header::HeaderName::from_static("x-template-version"),
                version.to_string(),
            ),
        ],
        text,
    )
        .into_response())
}

async fn put_template(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    Path(id): Path<String>,
    body: String,
) -> R<radris_report::service::TemplateInfo> {
    Ok(Json(
        st.reports.put_template(&p.tenant, &id, &body, &who).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    order_id: String,
    template_id: String,
}

async fn create(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    ApiJson(b): ApiJson<CreateBody>,
) -> Result<(StatusCode, Json<Report>), ReportProblem> {
    let r = st
        .reports
        .create(&p.tenant, &b.order_id, &b.template_id, &who)
        .await?;
    Ok((StatusCode::CREATED, Json(r)))
}

async fn report(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> R<Report> {
    Ok(Json(st.reports.get(&p.tenant, &id).await?))
}

async fn report_of_order(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(order_id): Path<String>,
) -> R<Report> {
    match st.reports.id_of_order(&p.tenant, &order_id).await? {
        Some(id) => Ok(Json(st.reports.get(&p.tenant, &id).await?)),
        None => Err(ReportError::NotFound(format!("a report of order {order_id}")).into()),
    }
}

async fn html(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ReportProblem> {
    let h = st.reports.html(&p.tenant, &id).await?;
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], h).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SaveBody {
    rev: i64,
    content: ReportContent,
}

async fn save(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<SaveBody>,
) -> R<serde_json::Value> {
    let rev = st
        .reports
        .save(&p.tenant, &id, b.rev, &b.content, &who)
        .await?;
    Ok(Json(serde_json::json!({ "rev": rev })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignBody {
    status: String,
    /// The signer's password again (re-authentication).
    password: String,
    /// A TOTP or recovery code when the account has a second factor.
    #[serde(default)]
    code: Option<String>,
}

async fn sign(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<SignBody>,
) -> Result<Response, ReportProblem> {
    let to = ReportStatus::parse(b.status.trim())
        .filter(|s| *s != ReportStatus::Draft)
        .ok_or_else(|| {
            ReportError::Invalid(format!(
                "status {:?}: sign as preliminary, final or amended",
                b.status
            ))
        })?;
    // the signer proves again who they are
    let login = st
        .users
        .login(&p.tenant, &p.user, &b.password, b.code.as_deref())
        .await
        .map_err(|e| ReportError::Database(e.to_string()))?;
    match login {
        Ok(who) if who.user == p.user => {}
        Ok(_)
        | Err(radris_auth::users::LoginFailure::BadCredentials)
        | Err(radris_auth::users::LoginFailure::Locked) => {
            return Ok(problem_response(
                StatusCode::FORBIDDEN,
                "re-authentication failed: the password is not right".into(),
                None,
            ));
        }
        Err(radris_auth::users::LoginFailure::SecondFactorRequired) => {
            return Ok(problem_response(
                StatusCode::FORBIDDEN,
                "re-authentication needs your second factor: send `code`".into(),
                Some(("second_factor_required", serde_json::json!(true))),
            ));
        }
        Err(radris_auth::users::LoginFailure::BadSecondFactor) => {
            return Ok(problem_response(
                StatusCode::FORBIDDEN,
                "re-authentication failed: the code is not right".into(),
                None,
            ));
        }
    }
    let version = st.reports.sign(&p.tenant, &id, to, &who).await?;
    // the signed version goes into the archive as DICOM SR (its failure does not undo the
    // signature: the report is signed; the SR can be made again from the stored version)
    let sr = st
        .reports
        .store_sr(&st.archive, &p.tenant, &id, version.version)
        .await;
    let sr_uid = match sr {
        Ok(uid) => Some(uid),
        Err(e) => {
            tracing::error!(report = %id, error = %e, "storing the report as DICOM SR failed");
            None
        }
    };
    Ok(
        Json(serde_json::json!({ "version": version, "sr_sop_instance_uid": sr_uid }))
            .into_response(),
    )
}

#[derive(Deserialize)]
struct VersionPath {
    id: String,
    version: i64,
}

async fn version(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(v): Path<VersionPath>,
) -> R<serde_json::Value> {
    Ok(Json(
        st.reports
            .signed_document(&p.tenant, &v.id, v.version)
            .await?,
    ))
}

async fn verify(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(v): Path<VersionPath>,
) -> R<radris_report::service::Verification> {
    Ok(Json(st.reports.verify(&p.tenant, &v.id, v.version).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CriticalBody {
    text: String,
}

async fn flag_critical(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<CriticalBody>,
) -> R<Report> {
    Ok(Json(
        st.reports
            .flag_critical(&p.tenant, &id, &b.text, &who)
            .await?,
    ))
}

async fn ack_critical(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    Path(id): Path<String>,
) -> R<Report> {
    Ok(Json(
        st.reports
            .acknowledge_critical(&p.tenant, &id, &who)
            .await?,
    ))
}

async fn pdf(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ReportProblem> {
    let bytes = st.reports.pdf(&st.archive, &p.tenant, &id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"report-{id}.pdf\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

async fn peer_reviews(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
) -> R<serde_json::Value> {
    Ok(Json(
        serde_json::json!({ "items": st.reports.peer_reviews(&p.tenant, &p.user).await? }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignBody {
    #[serde(default = "default_count")]
    count: usize,
}

fn default_count() -> usize {
    5
}

async fn assign_reviews(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    ApiJson(b): ApiJson<AssignBody>,
) -> R<serde_json::Value> {
    let items = st
        .reports
        .assign_peer_reviews(&p.tenant, &who, b.count)
        .await?;
    Ok(Json(serde_json::json!({ "items": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScoreBody {
    score: i64,
    #[serde(default)]
    significance: String,
    #[serde(default)]
    comment: String,
}

async fn score_review(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<ScoreBody>,
) -> R<radris_report::peer::PeerReview> {
    Ok(Json(
        st.reports
            .submit_peer_review(&p.tenant, &id, &who, b.score, &b.significance, &b.comment)
            .await?,
    ))
}

async fn quality(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
) -> R<radris_report::peer::Quality> {
    Ok(Json(st.reports.quality(&p.tenant).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FollowUpBody {
    text: String,
}

async fn follow_up(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<FollowUpBody>,
) -> R<radris_report::peer::PeerReview> {
    Ok(Json(
        st.reports.follow_up(&p.tenant, &id, &b.text, &who).await?,
    ))
}

async fn branding(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
) -> R<serde_json::Value> {
    use base64::Engine;
    let (institution, logo) = st.reports.branding(&p.tenant).await?;
    Ok(Json(serde_json::json!({
        "institution": institution,
        "logo_png": logo.map(|l| base64::engine::general_purpose::STANDARD.encode(l)),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BrandingBody {
    institution: String,
    /// The logo as base64 PNG; absent: the logo stays as it is.
    #[serde(default)]
    logo_png: Option<String>,
}

async fn put_branding(
    State(st): State<AppState>,
    Caller { p, actor: who, .. }: Caller,
    ApiJson(b): ApiJson<BrandingBody>,
) -> R<serde_json::Value> {
    use base64::Engine;
    let logo = b
        .logo_png
        .as_deref()
        .map(|l| base64::engine::general_purpose::STANDARD.decode(l.trim()))
        .transpose()
        .map_err(|e| ReportError::Invalid(format!("logo_png is not base64: {e}")))?;
    st.reports
        .set_branding(&p.tenant, &b.institution, logo.as_deref(), &who)
        .await?;
    Ok(Json(
        serde_json::json!({ "institution": b.institution.trim() }),
    ))
}
