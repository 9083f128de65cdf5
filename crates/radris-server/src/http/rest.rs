//! The REST API under `/api/v1` for the web application and integrators: patients, studies
//! (filters, sorting, cursor paging), series, instances, deletion, statistics, tokens and the
//! audit search. The OpenAPI 3.1 document is generated from these handlers (utoipa) and
//! served at `/api/openapi.json`, with Swagger UI at `/api/docs`.
//!
//! Every handler runs behind the auth middleware and takes the tenant from the principal.

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::{Extension, Json};
use radris_auth::Principal;
use radris_store::{DeleteLevel, StudyFilter, StudySort};
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::AppState;
use super::dicomweb::uid;
use super::problem::ApiError;

/// Query string extractor whose rejections are problem documents.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// JSON body extractor whose rejections are problem documents.
pub struct ApiJson<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state)
            .await
            .map(|j| ApiJson(j.0))
            .map_err(|e| ApiError::new(e.status(), e.body_text()))
    }
}

#[derive(Serialize, ToSchema)]
pub struct Problem {
    #[schema(example = "about:blank")]
    r#type: String,
    title: String,
    status: u16,
    detail: String,
}

#[derive(Serialize, ToSchema)]
pub struct Study {
    study_uid: String,
    patient_id: String,
    patient_name: String,
    patient_birth_date: String,
    patient_sex: String,
    /// `YYYYMMDD`
    study_date: String,
    study_time: String,
    accession_number: String,
    description: String,
    modalities: Vec<String>,
    num_series: i64,
    num_instances: i64,
    /// When the archive first received the study (milliseconds since the Unix epoch).
    received_at: i64,
}

impl From<radris_store::StudySummary> for Study {
    fn from(s: radris_store::StudySummary) -> Self {
        Study {
            study_uid: s.study_uid,
            patient_id: s.patient_id,
            patient_name: s.patient_name,
            patient_birth_date: s.patient_birth_date,
            patient_sex: s.patient_sex,
            study_date: s.study_date,
            study_time: s.study_time,
            accession_number: s.accession,
            description: s.description,
            modalities: s.modalities,
            num_series: s.num_series,
            num_instances: s.num_instances,
            received_at: s.received_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct StudyPage {
    items: Vec<Study>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Series {
    series_uid: String,
    study_uid: String,
    modality: String,
    series_number: String,
    description: String,
    body_part: String,
    num_instances: i64,
}

#[derive(Serialize, ToSchema)]
pub struct StudyDetail {
    study: Study,
    series: Vec<Series>,
}

#[derive(Serialize, ToSchema)]
pub struct Instance {
    sop_instance_uid: String,
    series_uid: String,
    study_uid: String,
    sop_class_uid: String,
    instance_number: String,
    transfer_syntax: String,
    size_bytes: i64,
    sha256: String,
}

#[derive(Serialize, ToSchema)]
pub struct Patient {
    patient_id: String,
    patient_name: String,
    birth_date: String,
    sex: String,
    num_studies: i64,
    num_instances: i64,
}

#[derive(Serialize, ToSchema)]
pub struct PatientPage {
    items: Vec<Patient>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Statistics {
    studies: i64,
    series: i64,
    instances: i64,
    stored_bytes: i64,
}

#[derive(Serialize, ToSchema)]
pub struct Deleted {
    deleted_instances: usize,
}

#[derive(Serialize, ToSchema)]
pub struct WhoAmI {
    tenant: String,
    user: String,
    scopes: Vec<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StudyQuery {
    /// Exact Patient ID.
    patient_id: Option<String>,
    /// Patient name, case-insensitive, `*` and `?` wildcards.
    patient_name: Option<String>,
    accession_number: Option<String>,
    /// A modality the study contains, e.g. `CT`.
    modality: Option<String>,
    /// `YYYYMMDD`, inclusive.
    date_from: Option<String>,
    /// `YYYYMMDD`, inclusive.
    date_to: Option<String>,
    /// Substring of the study description.
    description: Option<String>,
    /// `date`, `received` or `accession`; prefix `-` for descending. Default `-date`.
    sort: Option<String>,
    /// From `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1 to 1000, default 50.
    limit: Option<u32>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PatientQuery {
    /// Patient name, case-insensitive, `*` and `?` wildcards.
    name: Option<String>,
    cursor: Option<String>,
    /// 1 to 1000, default 50.
    limit: Option<u32>,
}

fn check_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(50),
        Some(l) if (1..=1000).contains(&l) => Ok(l),
        Some(_) => Err(ApiError::bad_request("limit must be between 1 and 1000")),
    }
}

fn check_date(name: &str, v: &Option<String>) -> Result<(), ApiError> {
    match v {
        Some(d) if d.len() != 8 || !d.chars().all(|c| c.is_ascii_digit()) => Err(
            ApiError::bad_request(format!("{name} must be a date as YYYYMMDD")),
        ),
        _ => Ok(()),
    }
}

/// List studies with filters, sorting and cursor paging.
#[utoipa::path(get, path = "/api/v1/studies", tag = "studies", params(StudyQuery),
    responses((status = 200, body = StudyPage), (status = 400, body = Problem), (status = 401, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_studies(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(authz): Extension<super::auth::Authz>,
    ApiQuery(q): ApiQuery<StudyQuery>,
) -> Result<Json<StudyPage>, ApiError> {
    let limit = check_limit(q.limit)?;
    check_date("date_from", &q.date_from)?;
    check_date("date_to", &q.date_to)?;
    let sort_text = q.sort.as_deref().unwrap_or("-date");
    let (descending, key) = match sort_text.strip_prefix('-') {
        Some(k) => (true, k),
        None => (false, sort_text),
    };
    let sort = match key {
        "date" => StudySort::Date,
        "received" => StudySort::Received,
        "accession" => StudySort::Accession,
        _ => {
            return Err(ApiError::bad_request(
                "sort must be date, received or accession, optionally prefixed with -",
            ));
        }
    };
    let filter = StudyFilter {
        patient_id: q.patient_id,
        patient_name: q.patient_name,
        accession: q.accession_number,
        modality: q.modality,
        date_from: q.date_from,
        date_to: q.date_to,
        description: q.description,
    };
    // callers who may read only some studies get those (a page may then be shorter than
    // `limit` but still carry a cursor: see Index::list_studies_where)
    let index = st.archive.index();
    let page = match authz.study_filter(&st).await? {
        None => {
            index
                .list_studies(
                    &p.tenant,
                    &filter,
                    sort,
                    descending,
                    q.cursor.as_deref(),
                    limit,
                )
                .await?
        }
        Some(readable) => {
            index
                .list_studies_where(
                    &p.tenant,
                    &filter,
                    sort,
                    descending,
                    q.cursor.as_deref(),
                    limit,
                    &|a| readable.allows(a),
                )
                .await?
        }
    };
    Ok(Json(StudyPage {
        items: page.items.into_iter().map(Study::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

fn series_dto(s: radris_store::SeriesSummary) -> Series {
    Series {
        series_uid: s.series_uid,
        study_uid: s.study_uid,
        modality: s.modality,
        series_number: s.series_number,
        description: s.description,
        body_part: s.body_part,
        num_instances: s.num_instances,
    }
}

/// One study with its series.
#[utoipa::path(get, path = "/api/v1/studies/{study_uid}", tag = "studies",
    params(("study_uid" = String, Path, description = "Study Instance UID")),
    responses((status = 200, body = StudyDetail), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_study(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(study_uid): Path<String>,
) -> Result<Json<StudyDetail>, ApiError> {
    let study_uid = uid("study UID", &study_uid)?;
    let study = st
        .archive
        .index()
        .study(&p.tenant, &study_uid)
        .await?
        .ok_or_else(|| ApiError::not_found("no such study"))?;
    let series = st.archive.index().series_of(&p.tenant, &study_uid).await?;
    Ok(Json(StudyDetail {
        study: study.into(),
        series: series.into_iter().map(series_dto).collect(),
    }))
}

/// The series of a study.
#[utoipa::path(get, path = "/api/v1/studies/{study_uid}/series", tag = "studies",
    params(("study_uid" = String, Path, description = "Study Instance UID")),
    responses((status = 200, body = Vec<Series>), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_series(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(study_uid): Path<String>,
) -> Result<Json<Vec<Series>>, ApiError> {
    let study_uid = uid("study UID", &study_uid)?;
    let series = st.archive.index().series_of(&p.tenant, &study_uid).await?;
    if series.is_empty() {
        return Err(ApiError::not_found("no such study"));
    }
    Ok(Json(series.into_iter().map(series_dto).collect()))
}

/// The instances of a series.
#[utoipa::path(get, path = "/api/v1/series/{series_uid}/instances", tag = "studies",
    params(("series_uid" = String, Path, description = "Series Instance UID")),
    responses((status = 200, body = Vec<Instance>), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_instances(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(series_uid): Path<String>,
) -> Result<Json<Vec<Instance>>, ApiError> {
    let series_uid = uid("series UID", &series_uid)?;
    let list = st
        .archive
        .index()
        .instances_in_series(&p.tenant, &series_uid)
        .await?;
    if list.is_empty() {
        return Err(ApiError::not_found("no such series"));
    }
    Ok(Json(
        list.into_iter()
            .map(|i| Instance {
                sop_instance_uid: i.sop_uid,
                series_uid: i.series_uid,
                study_uid: i.study_uid,
                sop_class_uid: i.sop_class_uid,
                instance_number: i.instance_number,
                transfer_syntax: i.transfer_syntax,
                size_bytes: i.size_bytes,
                sha256: i.sha256,
            })
            .collect(),
    ))
}

async fn delete(
    st: &AppState,
    p: &Principal,
    level: DeleteLevel,
    what: &str,
    raw: &str,
) -> Result<Json<Deleted>, ApiError> {
    let u = uid(what, raw)?;
    let n = st.archive.delete(&p.tenant, level, &u).await?;
    if n == 0 {
        return Err(ApiError::not_found(format!("no such {what}")));
    }
    Ok(Json(Deleted {
        deleted_instances: n,
    }))
}

/// Delete a study: index and files together. Needs the `delete` scope.
#[utoipa::path(delete, path = "/api/v1/studies/{study_uid}", tag = "studies",
    params(("study_uid" = String, Path, description = "Study Instance UID")),
    responses((status = 200, body = Deleted), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete_study(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(study_uid): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    delete(&st, &p, DeleteLevel::Study, "study", &study_uid).await
}

/// Delete a series.
#[utoipa::path(delete, path = "/api/v1/series/{series_uid}", tag = "studies",
    params(("series_uid" = String, Path, description = "Series Instance UID")),
    responses((status = 200, body = Deleted), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete_series(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(series_uid): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    delete(&st, &p, DeleteLevel::Series, "series", &series_uid).await
}

/// Delete an instance.
#[utoipa::path(delete, path = "/api/v1/instances/{sop_instance_uid}", tag = "studies",
    params(("sop_instance_uid" = String, Path, description = "SOP Instance UID")),
    responses((status = 200, body = Deleted), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn delete_instance(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(sop): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    delete(&st, &p, DeleteLevel::Instance, "instance", &sop).await
}

/// List patients by Patient ID with cursor paging.
#[utoipa::path(get, path = "/api/v1/patients", tag = "patients", params(PatientQuery),
    responses((status = 200, body = PatientPage), (status = 400, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_patients(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(authz): Extension<super::auth::Authz>,
    ApiQuery(q): ApiQuery<PatientQuery>,
) -> Result<Json<PatientPage>, ApiError> {
    let limit = check_limit(q.limit)?;
    let index = st.archive.index();
    // callers who may read only some studies see the patients of those
    let page = match authz.study_filter(&st).await? {
        None => {
            index
                .list_patients(&p.tenant, q.name.as_deref(), q.cursor.as_deref(), limit)
                .await?
        }
        Some(readable) => {
            index
                .list_patients_where(
                    &p.tenant,
                    q.name.as_deref(),
                    q.cursor.as_deref(),
                    limit,
                    &|studies| studies.iter().any(|a| readable.allows(a)),
                )
                .await?
        }
    };
    Ok(Json(PatientPage {
        items: page
            .items
            .into_iter()
            .map(|x| Patient {
                patient_id: x.patient_id,
                patient_name: x.patient_name,
                birth_date: x.birth_date,
                sex: x.sex,
                num_studies: x.num_studies,
                num_instances: x.num_instances,
            })
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Storage statistics of the caller's tenant.
#[utoipa::path(get, path = "/api/v1/statistics", tag = "system",
    responses((status = 200, body = Statistics)), security(("bearer" = [])))]
pub async fn statistics(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Statistics>, ApiError> {
    let (studies, series, instances, bytes) = st.archive.index().statistics(&p.tenant).await?;
    Ok(Json(Statistics {
        studies,
        series,
        instances,
        stored_bytes: bytes,
    }))
}

/// Who the credential belongs to.
#[utoipa::path(get, path = "/api/v1/whoami", tag = "system",
    responses((status = 200, body = WhoAmI)), security(("bearer" = [])))]
pub async fn whoami(Extension(p): Extension<Principal>) -> Json<WhoAmI> {
    Json(WhoAmI {
        tenant: p.tenant.as_str().to_owned(),
        user: p.user.clone(),
        scopes: p.scopes.to_string().split(',').map(str::to_owned).collect(),
    })
}

#[derive(Serialize, ToSchema)]
pub struct Token {
    token_id: String,
    user: String,
    scopes: String,
    created_at: i64,
    /// 0: never expires.
    expires_at: i64,
    revoked: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    user: String,
    /// Comma separated: read, write, delete, admin.
    scopes: String,
    /// Lifetime in days; absent: no expiry.
    days: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    token_id: String,
    /// The secret, shown only in this response.
    token: String,
}

/// The tenant's API tokens (never their secrets). Needs the `admin` scope.
#[utoipa::path(get, path = "/api/v1/admin/tokens", tag = "admin",
    responses((status = 200, body = Vec<Token>), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn list_tokens(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Vec<Token>>, ApiError> {
    let list = st
        .tokens
        .list(&p.tenant)
        .await
        .map_err(|e| ApiError::internal("listing tokens", e))?;
    Ok(Json(
        list.into_iter()
            .map(|t| Token {
                token_id: t.token_id,
                user: t.user,
                scopes: t.scopes,
                created_at: t.created_at,
                expires_at: t.expires_at,
                revoked: t.revoked,
            })
            .collect(),
    ))
}

/// Create an API token in the caller's tenant.
#[utoipa::path(post, path = "/api/v1/admin/tokens", tag = "admin", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 400, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn create_token(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let scopes = radris_auth::Scopes::parse(&req.scopes)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if !p.scopes.covers(scopes) {
        return Err(ApiError::forbidden(
            "a token cannot carry scopes its creator lacks",
        ));
    }
    let lifetime = req
        .days
        .map(|d| std::time::Duration::from_secs(u64::from(d) * 86_400));
    let (token_id, token) = st
        .tokens
        .create(&p.tenant, &req.user, scopes, lifetime)
        .await
        .map_err(|e| match e {
            radris_auth::AuthError::Invalid(m) => ApiError::bad_request(m),
            e => ApiError::internal("creating a token", e),
        })?;
    Ok((StatusCode::CREATED, Json(CreatedToken { token_id, token })))
}

/// Revoke an API token of the caller's tenant.
#[utoipa::path(delete, path = "/api/v1/admin/tokens/{token_id}", tag = "admin",
    params(("token_id" = String, Path)),
    responses((status = 204), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn revoke_token(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(token_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let done = st
        .tokens
        .revoke(&p.tenant, &token_id)
        .await
        .map_err(|e| ApiError::internal("revoking a token", e))?;
    if done {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such active token"))
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    actor: Option<String>,
    /// Prefix of the action, e.g. `http GET /dicom-web`.
    action: Option<String>,
    /// Substring of the resource (e.g. a Study Instance UID).
    resource: Option<String>,
    /// Milliseconds since the Unix epoch, inclusive.
    since: Option<i64>,
    /// Milliseconds since the Unix epoch, exclusive.
    until: Option<i64>,
    /// 1 to 1000, default 50.
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditEntry {
    seq: i64,
    at: i64,
    actor: String,
    action: String,
    outcome: String,
    resource: String,
    detail: String,
    source: String,
    hash: String,
}

/// Search the tenant's audit log, newest first. Needs the `admin` scope.
#[utoipa::path(get, path = "/api/v1/audit", tag = "admin", params(AuditQuery),
    responses((status = 200, body = Vec<AuditEntry>), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn search_audit(
    State(st): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let limit = check_limit(q.limit)?;
    let found = radris_auth::audit::search(
        st.archive.index().pool(),
        p.tenant.as_str(),
        &radris_auth::audit::AuditQuery {
            actor: q.actor,
            action_prefix: q.action,
            resource_contains: q.resource,
            since: q.since,
            until: q.until,
            limit: i64::from(limit),
        },
    )
    .await
    .map_err(|e| ApiError::internal("searching the audit log", e))?;
    Ok(Json(
        found
            .into_iter()
            .map(|r| AuditEntry {
                seq: r.seq,
                at: r.at,
                actor: r.actor,
                action: r.action,
                outcome: r.outcome,
                resource: r.resource,
                detail: r.detail,
                source: r.source,
                hash: r.hash,
            })
            .collect(),
    ))
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "RADRIS API",
        description = "REST API of the RADRIS archive. DICOMweb (QIDO-RS, WADO-RS, STOW-RS) is served under /dicom-web as PS3.18 specifies. Errors are RFC 9457 problem documents. Authenticate with `Authorization: Bearer <token>` (`radris admin token create`).",
        license(name = "Apache-2.0")
    ),
    paths(super::session::login, super::session::logout, super::webauthn::login_finish, super::oidc::methods),
    components(schemas(Problem)),
    modifiers(&BearerAuth),
    tags(
        (name = "studies", description = "Studies, series and instances"),
        (name = "patients", description = "Patients"),
        (name = "system", description = "Statistics and identity"),
        (name = "admin", description = "Tokens and the audit log (admin scope)"),
        (name = "auth", description = "Sign-in with a password: a session cookie"),
        (name = "privacy", description = "Subject access export, legal holds and erasure (admin scope)")
    )
)]
pub struct ApiDoc;

/// The REST routes with their OpenAPI description.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_studies))
        .routes(routes!(get_study, delete_study))
        .routes(
            routes!(
                super::annotations::get_annotations,
                super::annotations::put_annotations
            )
            // the viewer's documents may exceed the default body limit (this layer sits
            // inside the router-wide one, so it wins for this route)
            .layer(axum::extract::DefaultBodyLimit::max(
                super::annotations::MAX_BODY_BYTES,
            )),
        )
        .routes(routes!(list_series))
        .routes(routes!(list_instances))
        .routes(routes!(delete_series))
        .routes(routes!(delete_instance))
        .routes(routes!(list_patients))
        .routes(routes!(statistics))
        .routes(routes!(whoami))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(search_audit))
        .routes(routes!(super::privacy::export_patient))
        .routes(routes!(
            super::privacy::place_hold,
            super::privacy::lift_hold
        ))
        .routes(routes!(super::privacy::erase_patient))
        .routes(routes!(super::privacy::deidentify_study))
        .routes(routes!(super::audit_export::export_audit))
        .routes(routes!(super::session::totp_enrol))
        .routes(routes!(super::session::totp_confirm))
        .routes(routes!(super::webauthn::register_start))
        .routes(routes!(super::webauthn::register_finish))
        .routes(routes!(super::webauthn::list_passkeys))
        .routes(routes!(super::webauthn::delete_passkey))
        .routes(routes!(
            super::policy::get_policies,
            super::policy::put_policies,
            super::policy::reset_policies
        ))
        .routes(routes!(super::policy::validate_policies))
        .routes(routes!(super::policy::put_user))
        .routes(routes!(super::policy::open_break_glass))
        .routes(routes!(super::policy::close_break_glass))
}
