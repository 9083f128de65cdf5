//! Authorisation administration and emergency access over HTTP:
//! * `/api/v1/admin/policies`: the tenant's Cedar policies (read, replace, validate, reset);
//!   every change audited (`auth.policy.set`, `auth.policy.reset`). A policy text that does not
//!   parse or validate is a 400 with Cedar's messages, and the policies in force stay.
//! * `/api/v1/admin/users/{user}`: an account's roles, site and person name (the attributes
//!   the policies see), or a new account when a password is given; audited (`auth.user.set`).
//! * `/api/v1/auth/break-glass`: the signed-in user opens (with a reason) and closes an
//!   emergency-access grant; both audited by the grant's own records.
//!
//! Who may call these is decided by the auth middleware (`admin` scope and the Cedar `admin`
//! action for the admin routes; any signed-in user for break-glass, whose opening the engine
//! itself checks against the `breakGlass` action).

use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use radris_auth::Principal;
use radris_auth::policy::{BreakGlassScope, MAX_POLICY_TEXT, PolicyDocument, PolicyError};
use radris_core::Uid;
use radris_core::audit::{AuditRecord, Outcome};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Authz;
use super::problem::ApiError;
use super::rest::{ApiJson, Problem};

/// A tenant's policies.
#[derive(Serialize, ToSchema)]
pub struct Policies {
    /// Cedar policy text (comments included), as stored.
    text: String,
    /// 1, 2, … per tenant; 0 for the shipped defaults of a tenant that never stored any.
    version: i64,
    /// Milliseconds since the Unix epoch; 0 for never.
    updated_at: i64,
    updated_by: String,
    /// The tenant uses the shipped default policies.
    is_default: bool,
}

impl From<PolicyDocument> for Policies {
    fn from(d: PolicyDocument) -> Self {
        Policies {
            text: d.text,
            version: d.version.number,
            updated_at: d.version.updated_at,
            updated_by: d.version.updated_by,
            is_default: d.is_default,
        }
    }
}

/// Policy text as JSON (the body may also be `text/plain`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyText {
    text: String,
}

/// The outcome of a dry run.
#[derive(Serialize, ToSchema)]
pub struct Validation {
    valid: bool,
    /// Number of policies (when valid).
    policies: usize,
    /// What is wrong, with policy and line (when invalid).
    errors: Vec<String>,
}

fn policy_error(context: &str, e: PolicyError) -> ApiError {
    match e {
        PolicyError::Invalid { messages, .. } => ApiError::bad_request(format!(
            "the policies are invalid (the policies in force are unchanged): {}",
            messages.join("\n")
        )),
        PolicyError::Conflict { .. } => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        PolicyError::Denied { .. } => ApiError::forbidden(e.to_string()),
        PolicyError::BreakGlassRefused { reason, .. } => ApiError::bad_request(reason),
        e if e.is_client_error() => ApiError::bad_request(e.to_string()),
        e => ApiError::internal(context, e),
    }
}

/// The policy text of a PUT or validate body: `text/plain`, or JSON `{"text": …}`.
fn policy_text(headers: &HeaderMap, body: &Bytes) -> Result<String, ApiError> {
    if body.len() > MAX_POLICY_TEXT {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("policy text is limited to {MAX_POLICY_TEXT} bytes"),
        ));
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/plain");
    let essence = ct.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") {
        let PolicyText { text } = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("expected {{\"text\": …}}: {e}")))?;
        Ok(text)
    } else if essence.eq_ignore_ascii_case("text/plain") || essence.is_empty() {
        String::from_utf8(body.to_vec())
            .map_err(|_| ApiError::bad_request("the policy text is not UTF-8"))
    } else {
        Err(ApiError::unsupported_media(
            "send the policies as text/plain or application/json {\"text\": …}",
        ))
    }
}

fn audit(s: &AppState, p: &Principal, authz: &Authz, action: &str, detail: serde_json::Value) {
    s.audit.record(AuditRecord {
        tenant: p.tenant.to_string(),
        actor: p.actor.clone(),
        action: action.to_owned(),
        outcome: Outcome::Success,
        resource: format!("tenant:{}", p.tenant),
        detail: detail.to_string(),
        source: authz.source.clone(),
    });
}

/// The policies in force for a tenant, as the admin routes answer them.
async fn in_force(
    s: &AppState,
    tenant: &radris_core::TenantId,
) -> Result<Json<Policies>, ApiError> {
    let doc = s
        .policy
        .policies(tenant)
        .await
        .map_err(|e| policy_error("reading the policies", e))?;
    Ok(Json(doc.into()))
}

/// The tenant's authorisation policies.
#[utoipa::path(get, path = "/api/v1/admin/policies", tag = "admin",
    responses((status = 200, body = Policies), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn get_policies(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Policies>, ApiError> {
    in_force(&s, &p.tenant).await
}

/// Replace the tenant's policies (`text/plain` Cedar, or JSON `{"text": …}`). They take
/// effect at once if they parse and validate against the schema; otherwise 400 with Cedar's
/// messages and the policies in force stay. A set that would lock administrators out is
/// refused.
#[utoipa::path(put, path = "/api/v1/admin/policies", tag = "admin",
    request_body(content = String, content_type = "text/plain", description = "Cedar policies"),
    responses((status = 200, body = Policies), (status = 400, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn put_policies(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(authz): Extension<Authz>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Policies>, ApiError> {
    let text = policy_text(&headers, &body)?;
    let version = s
        .policy
        .set_policies(&p.tenant, &text, &p.user)
        .await
        .map_err(|e| policy_error("storing the policies", e))?;
    audit(
        &s,
        &p,
        &authz,
        "auth.policy.set",
        serde_json::json!({ "version": version.number, "bytes": text.len() }),
    );
    in_force(&s, &p.tenant).await
}

/// Check a policy text against the schema without storing it. Always 200: `valid` says
/// whether it would be accepted, `errors` why not.
#[utoipa::path(post, path = "/api/v1/admin/policies/validate", tag = "admin",
    request_body(content = String, content_type = "text/plain", description = "Cedar policies"),
    responses((status = 200, body = Validation), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn validate_policies(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Validation>, ApiError> {
    let text = policy_text(&headers, &body)?;
    let engine = s.policy.clone();
    let tenant = p.tenant.clone();
    // validation is CPU work proportional to the text
    let result = tokio::task::spawn_blocking(move || engine.validate(&tenant, &text))
        .await
        .map_err(|e| ApiError::internal("validating policies", e))?;
    Ok(Json(match result {
        Ok(n) => Validation {
            valid: true,
            policies: n,
            errors: Vec::new(),
        },
        Err(PolicyError::Invalid { messages, .. }) => Validation {
            valid: false,
            policies: 0,
            errors: messages,
        },
        Err(e) => return Err(policy_error("validating policies", e)),
    }))
}

/// Go back to the shipped default policies (a new version; the history stays).
#[utoipa::path(delete, path = "/api/v1/admin/policies", tag = "admin",
    responses((status = 200, body = Policies), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn reset_policies(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(authz): Extension<Authz>,
) -> Result<Json<Policies>, ApiError> {
    let version = s
        .policy
        .reset_to_default(&p.tenant, &p.user)
        .await
        .map_err(|e| policy_error("resetting the policies", e))?;
    audit(
        &s,
        &p,
        &authz,
        "auth.policy.reset",
        serde_json::json!({ "version": version.number }),
    );
    in_force(&s, &p.tenant).await
}

/// Changes to an account; absent fields stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    /// Comma separated: admin, radiologist, technologist, referring, auditor, service.
    roles: Option<String>,
    /// The site (hospital, department) the user works at; "" for none.
    site: Option<String>,
    /// The name as DICOM spells it in ReferringPhysicianName (`Family^Given`): studies
    /// referred by this name are the user's orders.
    person_name: Option<String>,
    /// Creates the account when it does not exist (then `roles` is required).
    password: Option<String>,
}

/// An account's authorisation attributes.
#[derive(Serialize, ToSchema)]
pub struct UserProfile {
    user: String,
    roles: Vec<String>,
    site: String,
    person_name: String,
    disabled: bool,
    /// Whether this request created the account.
    created: bool,
}

/// Set an account's roles, site and person name, or create it (with `password`).
#[utoipa::path(put, path = "/api/v1/admin/users/{user}", tag = "admin", request_body = UserChange,
    params(("user" = String, Path, description = "User name")),
    responses((status = 200, body = UserProfile), (status = 201, body = UserProfile),
        (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn put_user(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(authz): Extension<Authz>,
    Path(user): Path<String>,
    ApiJson(change): ApiJson<UserChange>,
) -> Result<Response, ApiError> {
    let bad = |e: radris_auth::AuthError| match e {
        radris_auth::AuthError::Invalid(m) => ApiError::bad_request(m),
        e => ApiError::internal("updating a user", e),
    };
    let mut created = false;
    if s.users
        .profile(&p.tenant, &user)
        .await
        .map_err(bad)?
        .is_none()
    {
        let (Some(password), Some(roles)) = (&change.password, &change.roles) else {
            return Err(ApiError::not_found(
                "no such user; give a password and roles to create the account",
            ));
        };
        s.users
            .create(&p.tenant, &user, password, roles)
            .await
            .map_err(bad)?;
        created = true;
    } else if change.password.is_some() {
        return Err(ApiError::bad_request(
            "the account exists; passwords are not changed here",
        ));
    }
    let user = user.trim().to_owned();
    s.users
        .set_profile(
            &p.tenant,
            &user,
            change.roles.as_deref(),
            change.site.as_deref(),
            change.person_name.as_deref(),
        )
        .await
        .map_err(bad)?;
    let profile = s
        .users
        .profile(&p.tenant, &user)
        .await
        .map_err(bad)?
        .ok_or_else(|| ApiError::not_found("no such user"))?;
    s.audit.record(AuditRecord {
        tenant: p.tenant.to_string(),
        actor: p.actor.clone(),
        action: "auth.user.set".into(),
        outcome: Outcome::Success,
        resource: format!("user:{user}"),
        detail: serde_json::json!({
            "created": created,
            "roles": profile.roles,
            "site": profile.site,
            "person_name_set": !profile.person_name.is_empty(),
        })
        .to_string(),
        source: authz.source.clone(),
    });
    let body = UserProfile {
        user,
        roles: profile
            .roles
            .split(',')
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect(),
        site: profile.site,
        person_name: profile.person_name,
        disabled: profile.disabled,
        created,
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(body)).into_response())
}

/// A request for emergency access.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassRequest {
    /// Why, in words (at least 10 characters); kept in the audit log. Required.
    reason: Option<String>,
    /// How long the grant lasts: 1 to 240, default 60.
    minutes: Option<u64>,
    /// Only this study; default: every study of the tenant.
    study_uid: Option<String>,
}

/// An open break-glass grant.
#[derive(Serialize, ToSchema)]
pub struct BreakGlass {
    grant_id: String,
    user: String,
    /// `tenant:<id>` or `study:<uid>`.
    scope: String,
    reason: String,
    /// Milliseconds since the Unix epoch.
    created_at: i64,
    expires_at: i64,
}

/// Open a break-glass grant for the signed-in user: for its duration the policies annotated
/// `@break_glass` apply (by default: clinical roles read any study of the tenant). Every access
/// it allows is audited as `auth.break-glass.access`.
#[utoipa::path(post, path = "/api/v1/auth/break-glass", tag = "auth", request_body = BreakGlassRequest,
    responses((status = 201, body = BreakGlass), (status = 400, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn open_break_glass(
    State(s): State<AppState>,
    Extension(authz): Extension<Authz>,
    ApiJson(req): ApiJson<BreakGlassRequest>,
) -> Result<Response, ApiError> {
    let Some(reason) = req.reason.as_deref().filter(|r| !r.trim().is_empty()) else {
        return Err(ApiError::bad_request(
            "break-glass needs a reason: why this emergency access is necessary",
        ));
    };
    let scope = match req.study_uid.as_deref() {
        None => BreakGlassScope::Tenant,
        Some(u) => BreakGlassScope::Study(
            Uid::parse(u).map_err(|e| ApiError::bad_request(format!("study_uid: {e}")))?,
        ),
    };
    let duration = match req.minutes {
        None => None,
        Some(m) if (1..=240).contains(&m) => Some(Duration::from_secs(m * 60)),
        Some(_) => return Err(ApiError::bad_request("minutes must be between 1 and 240")),
    };
    let grant = match s
        .policy
        .break_glass_open(&authz.subject, reason, duration, scope)
        .await
    {
        Ok(g) => g,
        Err(e) => {
            let denied = matches!(e, PolicyError::Denied { .. });
            s.audit.record(AuditRecord {
                tenant: authz.subject.tenant.to_string(),
                actor: format!("user:{}", authz.subject.user),
                action: "auth.break-glass.open".into(),
                outcome: if denied {
                    Outcome::Denied
                } else {
                    Outcome::Failure
                },
                resource: format!("tenant:{}", authz.subject.tenant),
                detail: serde_json::json!({ "refused": e.to_string() }).to_string(),
                source: authz.source.clone(),
            });
            return Err(policy_error("opening break-glass", e));
        }
    };
    s.audit.record(grant.audit_record(&authz.source));
    let body = BreakGlass {
        grant_id: grant.id.clone(),
        user: grant.user.clone(),
        scope: match &grant.scope {
            BreakGlassScope::Tenant => format!("tenant:{}", grant.tenant),
            BreakGlassScope::Study(u) => format!("study:{u}"),
        },
        reason: grant.reason.clone(),
        created_at: grant.created_at,
        expires_at: grant.expires_at,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// Close one of the signed-in user's break-glass grants before it expires.
#[utoipa::path(delete, path = "/api/v1/auth/break-glass/{grant_id}", tag = "auth",
    params(("grant_id" = String, Path, description = "The grant's id")),
    responses((status = 204), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn close_break_glass(
    State(s): State<AppState>,
    Extension(authz): Extension<Authz>,
    Path(grant_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let subject = &authz.subject;
    let grants = s
        .policy
        .break_glass_active(&subject.tenant, &subject.user)
        .await
        .map_err(|e| policy_error("reading break-glass grants", e))?;
    let Some(grant) = grants.iter().find(|g| g.id == grant_id) else {
        return Err(ApiError::not_found("no such open grant of yours"));
    };
    let closed = s
        .policy
        .break_glass_close(&subject.tenant, &subject.user, &grant_id)
        .await
        .map_err(|e| policy_error("closing break-glass", e))?;
    if !closed {
        return Err(ApiError::not_found("no such open grant of yours"));
    }
    s.audit.record(grant.close_record(&authz.source));
    Ok(StatusCode::NO_CONTENT)
}
