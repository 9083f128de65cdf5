//! Authentication, scope check, authorisation and audit for every protected route, as one
//! middleware so no route can forget any of them.
//!
//! The tenant comes from the credential only. A request that tries to name a tenant itself
//! (a `tenant` or `tenant_id` query parameter) is refused.
//!
//! Two checks, both must pass:
//! 1. **Scope** ([`required_scope`]): what the credential may do at most. API tokens stay
//!    least-privilege (a read token never writes, whatever its user's roles).
//! 2. **Cedar** ([`radris_auth::policy`]): whether the *subject* may do this *action* on this
//!    *resource* under the tenant's policies. [`target`] maps (method, matched route) to the
//!    action and the resource; the study of a request is read from the index (site,
//!    ReferringPhysicianName → referrers = the accounts with that person name, patient).
//!    A study that does not exist is not decided here: the handler answers 404 (other
//!    tenants' studies do not exist for the caller, so 403 and 404 leak nothing across
//!    tenants).
//!
//! Who the subject is ([`subject_of`]):
//! * a session, or an API token whose user name is an account of the tenant: that account's
//!   roles and site (a disabled account has no roles);
//! * an API token of a name that is no account (scripts, integrations): roles from its scopes,
//!   so tokens keep working as before Cedar: `admin` or `delete` scope → role `admin` (the
//!   scopes still bound what it may do: a `read,delete` token cannot administer), otherwise
//!   (`read`, `write`) → role `service`;
//! * the anonymous principal (`http.anonymous`) → role `service`.
//!
//! Lists (QIDO-RS searches without a study in the path, `GET /api/v1/studies`,
//! `GET /api/v1/patients`) are not decided here: their handlers keep only the studies the
//! subject may read ([`Authz::study_filter`]).
//!
//! Denials are `403` problem documents and audit records (outcome denied, the Cedar reasons
//! in the detail). Accesses allowed only through a break-glass grant also write the grant's
//! `auth.break-glass.access` record.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::RequestExt;
use axum::extract::{ConnectInfo, MatchedPath, RawPathParams, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use radris_auth::policy::{
    AccessRequest, Action, BreakGlassGrant, Decision, PolicyEngine, Resource, StudyAttributes,
    Subject,
};
use radris_auth::{AuthError, Principal, Scope, Scopes};
use radris_core::audit::{AuditRecord, Outcome};
use radris_core::{TenantId, Uid};
use radris_store::index::StudyAccess;

use super::AppState;
use super::problem::ApiError;

/// The scope a request needs: reads need `read`, stores `write`, deletions `delete`,
/// anything under `/api/v1/admin` needs `admin`.
pub fn required_scope(method: &Method, route: &str) -> Scope {
    if route == "/api/v1/admin/users/{user}" {
        // the account administration of the tenant
        return Scope::Admin;
    }
    if route == "/api/v1/admin/studies/{study_uid}/deidentify" {
        // a research export: the `read` scope, then Cedar's `export` decides (radiologists
        // and admins by default)
        return Scope::Read;
    }
    if route.starts_with("/api/v1/admin") || route.starts_with("/api/v1/audit") {
        Scope::Admin
    } else if route.starts_with("/api/v1/auth/") {
        // a person's own second factor: any signed-in user
        Scope::Read
    } else if method == Method::DELETE {
        Scope::Delete
    } else if method == Method::GET || method == Method::HEAD || method == Method::OPTIONS {
        Scope::Read
    } else {
        Scope::Write
    }
}

fn bearer(req: &Request) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

pub async fn require(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let source = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.to_string());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_owned(), |m| m.as_str().to_owned());
    let method = req.method().clone();
    let action = format!("http {method} {route}");
    let resource = req.uri().path().to_owned();
    let detail = req.uri().query().unwrap_or_default().to_owned();
    let audit = |tenant: &str, actor: &str, outcome: Outcome, detail: String| {
        s.audit.record(AuditRecord {
            tenant: tenant.to_owned(),
            actor: actor.to_owned(),
            action: action.clone(),
            outcome,
            resource: resource.clone(),
            detail,
            source: source.clone(),
        })
    };

    let cookie = super::session::session_cookie(req.headers());
    let principal = match (bearer(&req), cookie) {
        (Some(token), _) => match s.tokens.authenticate(token).await {
            Ok(p) => p,
            Err(AuthError::Unauthenticated) => {
                audit(
                    "-",
                    "unknown",
                    Outcome::Denied,
                    "invalid bearer token".into(),
                );
                return ApiError::unauthorized().into_response();
            }
            Err(e) => return ApiError::internal("authentication", e).into_response(),
        },
        (None, Some(secret)) => {
            match s
                .users
                .session(&secret, radris_auth::users::IDLE_TIMEOUT)
                .await
            {
                Ok(p) => p,
                Err(AuthError::Unauthenticated) => {
                    audit(
                        "-",
                        "unknown",
                        Outcome::Denied,
                        "expired, closed or unknown session".into(),
                    );
                    return ApiError::unauthorized().into_response();
                }
                Err(e) => return ApiError::internal("authentication", e).into_response(),
            }
        }
        (None, None) if s.http.anonymous => Principal {
            tenant: TenantId::default_tenant(),
            actor: "anonymous".into(),
            user: "anonymous".into(),
            scopes: Scopes::of(&[Scope::Read, Scope::Write]),
        },
        (None, None) => {
            audit("-", "unknown", Outcome::Denied, "no credentials".into());
            return ApiError::unauthorized().into_response();
        }
    };
    let tenant = principal.tenant.as_str().to_owned();
    if smuggles_tenant(req.uri().query()) {
        audit(
            &tenant,
            &principal.actor,
            Outcome::Denied,
            format!("tenant named in the request: {detail}"),
        );
        return ApiError::bad_request(
            "the tenant comes from your credentials; a tenant parameter is not accepted",
        )
        .into_response();
    }
    let needed = required_scope(&method, &route);
    if !principal.can(needed) {
        audit(
            &tenant,
            &principal.actor,
            Outcome::Denied,
            format!("missing scope {}", needed.as_str()),
        );
        return ApiError::forbidden(format!(
            "this credential lacks the '{}' scope",
            needed.as_str()
        ))
        .into_response();
    }
    let actor = principal.actor.clone();
    let subject = match subject_of(&s, &principal).await {
        Ok(subject) => subject,
        Err(e) => return e.into_response(),
    };
    let authz = Authz {
        subject,
        source: source.clone(),
    };
    let params: Vec<(String, String)> = match req.extract_parts::<RawPathParams>().await {
        Ok(p) => p
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        Err(_) => Vec::new(),
    };
    match authorize_request(&s, &authz, &method, &route, &params, req.uri().query()).await {
        Ok(Verdict::Allowed) => {}
        Ok(Verdict::Denied { action, why }) => {
            audit(
                &tenant,
                &actor,
                Outcome::Denied,
                format!("policy denies {action}: {why}"),
            );
            return ApiError::forbidden(format!(
                "the authorisation policies do not permit {} to {action} this resource",
                authz.subject.user
            ))
            .into_response();
        }
        Err(e) => return e.into_response(),
    }
    req.extensions_mut().insert(principal);
    req.extensions_mut().insert(authz);
    let resp = next.run(req).await;
    let status = resp.status();
    let outcome = if status.is_success() || status.is_redirection() {
        Outcome::Success
    } else if status.as_u16() == 401 || status.as_u16() == 403 {
        Outcome::Denied
    } else {
        Outcome::Failure
    };
    let mut detail = if detail.is_empty() {
        format!("status={}", status.as_u16())
    } else {
        format!("status={} {detail}", status.as_u16())
    };
    if let Some(AuditDetail(more)) = resp.extensions().get::<AuditDetail>() {
        detail.push(' ');
        detail.push_str(more);
    }
    audit(&tenant, &actor, outcome, detail);
    resp
}

/// What a handler adds to the audit record of its request (put in the response's
/// extensions; appended to the record's detail after the status and query).
#[derive(Debug, Clone)]
pub struct AuditDetail(pub String);

fn smuggles_tenant(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&').any(|kv| {
            let k = kv
                .split('=')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            k == "tenant" || k == "tenant_id" || k == "tenantid"
        })
    })
}

/// The caller as the policies see it, kept in the request for handlers (list filtering,
/// break-glass, policy administration).
#[derive(Debug, Clone)]
pub struct Authz {
    pub subject: Subject,
    /// The client address, for audit records.
    pub source: String,
}

/// What a request is about, for the policies ([`target`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// No policy decision: the caller's own account (second factors, break-glass, whoami)
    /// and tenant-wide counts without PHI (`/api/v1/statistics`).
    Unchecked,
    /// A list of studies or patients: the handler keeps what the subject may read.
    FilteredList,
    /// An action on the tenant as a whole.
    Tenant(Action),
    /// An action on the study a request names.
    Study(Action, StudyBy),
    /// STOW-RS without a study in the path: new studies carry the caller's site.
    NewStudy,
}

/// How a request names its study.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StudyBy {
    /// A path parameter holding the Study Instance UID.
    Study(&'static str),
    /// A path parameter holding a Series Instance UID.
    Series(&'static str),
    /// A path parameter holding a SOP Instance UID.
    Instance(&'static str),
    /// WADO-URI's `studyUID` query parameter.
    WadoUriQuery,
}

fn study_action(method: &Method) -> Action {
    if method == Method::GET || method == Method::HEAD || method == Method::OPTIONS {
        Action::Read
    } else if method == Method::DELETE {
        Action::Delete
    } else {
        Action::Write
    }
}

/// The action and resource of a request, from its method and matched route.
///
/// * `/api/v1/admin/studies/{study_uid}/deidentify` → export of that study;
/// * every other `/api/v1/admin/…` route (tokens, users, policies, and the patient-level
///   privacy operations — subject access export, legal hold, erasure — which span studies
///   and are the tenant's data-protection duties) → `admin` on the tenant;
/// * `/api/v1/audit…` → `audit` on the tenant;
/// * routes naming a study (or a series or instance, whose study is looked up) → read
///   (GET), delete (DELETE) or write (POST/PUT) of that study;
/// * a route this table does not know → `admin` on the tenant, so a new route is closed to
///   everyone but administrators until it is mapped.
pub fn target(method: &Method, route: &str) -> Target {
    let action = study_action(method);
    if route.starts_with("/api/v1/auth/") {
        // the signed-in user's own account; opening break-glass is decided by the engine
        return Target::Unchecked;
    }
    if route == "/api/v1/admin/studies/{study_uid}/deidentify" {
        return Target::Study(Action::Export, StudyBy::Study("study_uid"));
    }
    if route.starts_with("/api/v1/admin/") || route == "/api/v1/admin" {
        return Target::Tenant(Action::Admin);
    }
    if route == "/api/v1/audit" || route.starts_with("/api/v1/audit/") {
        return Target::Tenant(Action::Audit);
    }
    match route {
        "/api/v1/whoami" | "/api/v1/statistics" => Target::Unchecked,
        "/api/v1/studies" | "/api/v1/patients" | "/dicom-web/series" | "/dicom-web/instances" => {
            Target::FilteredList
        }
        "/dicom-web/studies" if action == Action::Read => Target::FilteredList,
        "/dicom-web/studies" => Target::NewStudy,
        "/wado" => Target::Study(Action::Read, StudyBy::WadoUriQuery),
        "/api/v1/series/{series_uid}/instances" | "/api/v1/series/{series_uid}" => {
            Target::Study(action, StudyBy::Series("series_uid"))
        }
        "/api/v1/instances/{sop_instance_uid}" => {
            Target::Study(action, StudyBy::Instance("sop_instance_uid"))
        }
        r if r.starts_with("/dicom-web/studies/{study}") => {
            Target::Study(action, StudyBy::Study("study"))
        }
        r if r.starts_with("/api/v1/studies/{study_uid}")
            || r.starts_with("/api/v1/render/studies/{study_uid}") =>
        {
            Target::Study(action, StudyBy::Study("study_uid"))
        }
        r if r == "/api/v1/reports" || r.starts_with("/api/v1/reports/") => Target::Tenant(
            super::reports::action_of(method, r.strip_prefix("/api/v1/reports").unwrap_or("")),
        ),
        r if r.starts_with("/api/v1/ris/") => {
            Target::Tenant(super::ris::action_of(method, &r["/api/v1/ris".len()..]))
        }
        _ => Target::Tenant(Action::Admin),
    }
}

/// The subject of a request (see the module documentation for the mapping).
pub async fn subject_of(s: &AppState, p: &Principal) -> Result<Subject, ApiError> {
    if p.actor == "anonymous" {
        return Ok(Subject::new(p.tenant.clone(), &p.user, "service", ""));
    }
    let profile = s
        .users
        .profile(&p.tenant, &p.user)
        .await
        .map_err(|e| ApiError::internal("reading the caller's account", e))?;
    Ok(match profile {
        Some(a) if a.disabled => Subject::new(p.tenant.clone(), &p.user, "", &a.site),
        Some(a) => Subject::new(p.tenant.clone(), &p.user, &a.roles, &a.site),
        None => Subject::new(p.tenant.clone(), &p.user, roles_of_scopes(p.scopes), ""),
    })
}

/// The role an API token of a name that is no account acts in.
pub fn roles_of_scopes(scopes: Scopes) -> &'static str {
    if scopes.contains(Scope::Admin) || scopes.contains(Scope::Delete) {
        "admin"
    } else {
        "service"
    }
}

enum Verdict {
    Allowed,
    Denied { action: Action, why: String },
}

fn describe(d: &Decision) -> String {
    let mut why = if d.reasons.is_empty() {
        "no policy permits it".to_owned()
    } else {
        format!("forbidden by {}", d.reasons.join(", "))
    };
    if !d.errors.is_empty() {
        why.push_str(&format!(" (policy errors: {})", d.errors.join("; ")));
    }
    why
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    let uri: axum::http::Uri = format!("/?{}", query?).parse().ok()?;
    let axum::extract::Query(pairs) =
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&uri).ok()?;
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

async fn authorize_request(
    s: &AppState,
    authz: &Authz,
    method: &Method,
    route: &str,
    params: &[(String, String)],
    query: Option<&str>,
) -> Result<Verdict, ApiError> {
    let tenant = authz.subject.tenant.clone();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let (action, resource) = match target(method, route) {
        Target::Unchecked | Target::FilteredList => return Ok(Verdict::Allowed),
        Target::Tenant(action) => (action, Resource::Tenant(tenant.clone())),
        Target::NewStudy => (Action::Write, authz.new_study(new_study_uid())),
        Target::Study(action, by) => {
            let index = s.archive.index();
            let raw = match by {
                StudyBy::Study(p) | StudyBy::Series(p) | StudyBy::Instance(p) => param(p),
                StudyBy::WadoUriQuery => query_param(query, "studyUID"),
            };
            // a malformed or missing UID: the handler explains it (400)
            let Some(raw) = raw.filter(|r| Uid::parse(r).is_ok()) else {
                return Ok(Verdict::Allowed);
            };
            let found = match by {
                StudyBy::Study(_) | StudyBy::WadoUriQuery => {
                    index.study_access(&tenant, &raw).await?
                }
                StudyBy::Series(_) => index.study_access_of_series(&tenant, &raw).await?,
                StudyBy::Instance(_) => index.study_access_of_instance(&tenant, &raw).await?,
            };
            match found {
                Some(access) => {
                    let referrers = s
                        .users
                        .named(&tenant, &access.referring_norm)
                        .await
                        .map_err(|e| ApiError::internal("reading the study's referrers", e))?;
                    (action, authz.study(&access, referrers))
                }
                // storing (STOW-RS) into a study that does not exist yet: a new study at the
                // caller's site. Other writes to a missing study (annotations) get 404.
                None if action == Action::Write
                    && matches!(by, StudyBy::Study(_))
                    && route.starts_with("/dicom-web/") =>
                {
                    let uid = Uid::parse(&raw).unwrap_or_else(|_| new_study_uid());
                    (action, authz.new_study(uid))
                }
                // no such study (in this tenant): the handler answers 404
                None => return Ok(Verdict::Allowed),
            }
        }
    };
    let grants = if action.on_study() {
        active_grants(&s.policy, &authz.subject).await?
    } else {
        Arc::from(Vec::new())
    };
    let decision = s.policy.authorize(&AccessRequest {
        subject: &authz.subject,
        action,
        resource: &resource,
        break_glass: &grants,
    });
    if !decision.allowed {
        return Ok(Verdict::Denied {
            action,
            why: describe(&decision),
        });
    }
    if decision.via_break_glass {
        authz.record_break_glass(s, &grants, action, &resource);
    }
    Ok(Verdict::Allowed)
}

/// A placeholder UID for a study about to be created (policies see its site, not its UID).
fn new_study_uid() -> Uid {
    // "2.25.0" is a valid UID (UUID-derived root, value 0) that no real study carries
    Uid::parse("2.25.0").expect("constant UID parses")
}

async fn active_grants(
    engine: &PolicyEngine,
    subject: &Subject,
) -> Result<Arc<[BreakGlassGrant]>, ApiError> {
    engine
        .break_glass_active(&subject.tenant, &subject.user)
        .await
        .map_err(|e| ApiError::internal("reading break-glass grants", e))
}

impl Authz {
    /// A study as the policies see it.
    pub fn study(&self, a: &StudyAccess, referrers: Vec<String>) -> Resource {
        Resource::Study(StudyAttributes {
            tenant: self.subject.tenant.clone(),
            study_uid: Uid::parse(&a.study_uid).unwrap_or_else(|_| new_study_uid()),
            site: a.site.clone(),
            referrers,
            patient: a.patient_id.clone(),
        })
    }

    /// A study about to be created by this caller: at the caller's site, no referrers yet.
    pub fn new_study(&self, uid: Uid) -> Resource {
        Resource::Study(StudyAttributes {
            tenant: self.subject.tenant.clone(),
            study_uid: uid,
            site: self.subject.site.clone(),
            referrers: Vec::new(),
            patient: String::new(),
        })
    }

    fn record_break_glass(
        &self,
        s: &AppState,
        grants: &[BreakGlassGrant],
        action: Action,
        resource: &Resource,
    ) {
        let now = now_millis();
        if let Some(g) = grants
            .iter()
            .find(|g| g.covers(&self.subject, resource, now))
        {
            s.audit
                .record(g.access_record(action, resource, &self.source));
        }
    }

    /// For list handlers: `None` when the subject reads every study of the tenant (the
    /// shipped policies and a role that reads everything: admin, radiologist, service), else
    /// a filter that decides study by study (and audits break-glass accesses).
    pub async fn study_filter(&self, s: &AppState) -> Result<Option<StudyReadFilter>, ApiError> {
        let reads_all = self
            .subject
            .roles
            .iter()
            .any(|r| matches!(r.as_str(), "admin" | "radiologist" | "service"));
        if reads_all {
            let doc = s
                .policy
                .policies(&self.subject.tenant)
                .await
                .map_err(|e| ApiError::internal("reading the tenant's policies", e))?;
            if doc.is_default {
                return Ok(None);
            }
        }
        let referrers = s
            .users
            .all_named(&self.subject.tenant)
            .await
            .map_err(|e| ApiError::internal("reading referrers", e))?;
        let grants = active_grants(&s.policy, &self.subject).await?;
        Ok(Some(StudyReadFilter {
            authz: self.clone(),
            state: s.clone(),
            referrers,
            grants,
        }))
    }
}

/// Decides, study by study, whether the subject may read it (lists).
pub struct StudyReadFilter {
    authz: Authz,
    state: AppState,
    referrers: std::collections::HashMap<String, Vec<String>>,
    grants: Arc<[BreakGlassGrant]>,
}

impl StudyReadFilter {
    /// Whether the subject may read the study; a read allowed only through break-glass is
    /// audited as such.
    pub fn allows(&self, a: &StudyAccess) -> bool {
        let referrers = self
            .referrers
            .get(&a.referring_norm)
            .cloned()
            .unwrap_or_default();
        let resource = self.authz.study(a, referrers);
        let decision = self.state.policy.authorize(&AccessRequest {
            subject: &self.authz.subject,
            action: Action::Read,
            resource: &resource,
            break_glass: &self.grants,
        });
        if decision.allowed && decision.via_break_glass {
            self.authz
                .record_break_glass(&self.state, &self.grants, Action::Read, &resource);
        }
        decision.allowed
    }
}

/// Stamp the caller's site on studies they just stored (STOW-RS), where the study has none.
pub async fn stamp_site(s: &AppState, p: &Principal, study_uids: Vec<String>) {
    let site = match s.users.profile(&p.tenant, &p.user).await {
        Ok(Some(a)) if !a.site.is_empty() => a.site,
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the storing user's site");
            return;
        }
    };
    let mut done = std::collections::HashSet::new();
    for uid in &study_uids {
        if done.insert(uid)
            && let Err(e) = s
                .archive
                .index()
                .stamp_study_site(&p.tenant, uid, &site)
                .await
        {
            tracing::warn!(error = %e, "could not stamp a study's site");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: Method, route: &str, expect: Target) {
        assert_eq!(target(&method, route), expect, "{method} {route}");
    }

    #[test]
    fn routes_map_to_actions_and_resources() {
        use Action::*;
        use StudyBy as By;
        check(Method::GET, "/dicom-web/studies", Target::FilteredList);
        check(Method::POST, "/dicom-web/studies", Target::NewStudy);
        check(Method::GET, "/dicom-web/series", Target::FilteredList);
        check(Method::GET, "/dicom-web/instances", Target::FilteredList);
        check(Method::GET, "/api/v1/studies", Target::FilteredList);
        check(
            Method::GET,
            "/api/v1/render/studies/{study_uid}/series/{series_uid}/{mode}",
            Target::Study(Read, StudyBy::Study("study_uid")),
        );
        check(
            Method::POST,
            "/api/v1/render/studies/{study_uid}/series/{series_uid}/derived",
            Target::Study(Write, StudyBy::Study("study_uid")),
        );
        check(Method::GET, "/api/v1/patients", Target::FilteredList);
        check(
            Method::GET,
            "/dicom-web/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
            Target::Study(Read, By::Study("study")),
        );
        check(
            Method::GET,
            "/dicom-web/studies/{study}/series",
            Target::Study(Read, By::Study("study")),
        );
        check(
            Method::POST,
            "/dicom-web/studies/{study}",
            Target::Study(Write, By::Study("study")),
        );
        check(
            Method::GET,
            "/api/v1/studies/{study_uid}",
            Target::Study(Read, By::Study("study_uid")),
        );
        check(
            Method::DELETE,
            "/api/v1/studies/{study_uid}",
            Target::Study(Delete, By::Study("study_uid")),
        );
        check(
            Method::GET,
            "/api/v1/studies/{study_uid}/annotations",
            Target::Study(Read, By::Study("study_uid")),
        );
        check(
            Method::PUT,
            "/api/v1/studies/{study_uid}/annotations",
            Target::Study(Write, By::Study("study_uid")),
        );
        check(
            Method::GET,
            "/api/v1/series/{series_uid}/instances",
            Target::Study(Read, By::Series("series_uid")),
        );
        check(
            Method::DELETE,
            "/api/v1/series/{series_uid}",
            Target::Study(Delete, By::Series("series_uid")),
        );
        check(
            Method::DELETE,
            "/api/v1/instances/{sop_instance_uid}",
            Target::Study(Delete, By::Instance("sop_instance_uid")),
        );
        check(Method::GET, "/wado", Target::Study(Read, By::WadoUriQuery));
        check(
            Method::POST,
            "/api/v1/admin/studies/{study_uid}/deidentify",
            Target::Study(Export, By::Study("study_uid")),
        );
        check(Method::GET, "/api/v1/admin/tokens", Target::Tenant(Admin));
        check(Method::PUT, "/api/v1/admin/policies", Target::Tenant(Admin));
        check(
            Method::GET,
            "/api/v1/admin/patients/{patient_id}/export",
            Target::Tenant(Admin),
        );
        check(
            Method::DELETE,
            "/api/v1/admin/patients/{patient_id}",
            Target::Tenant(Admin),
        );
        check(Method::GET, "/api/v1/audit", Target::Tenant(Audit));
        check(Method::GET, "/api/v1/audit/export", Target::Tenant(Audit));
        check(Method::POST, "/api/v1/auth/break-glass", Target::Unchecked);
        check(Method::POST, "/api/v1/auth/totp/enrol", Target::Unchecked);
        check(Method::GET, "/api/v1/whoami", Target::Unchecked);
        // unknown routes are for administrators only until mapped
        check(Method::GET, "/api/v1/something-new", Target::Tenant(Admin));
    }

    /// Every REST route is mapped deliberately: only `/api/v1/admin…` routes may fall to
    /// the administrators-only default.
    #[test]
    fn every_rest_route_is_mapped() {
        let (_, openapi) = super::super::rest::routes().split_for_parts();
        for (path, item) in &openapi.paths.paths {
            for (method, op) in [
                (Method::GET, &item.get),
                (Method::POST, &item.post),
                (Method::PUT, &item.put),
                (Method::DELETE, &item.delete),
            ] {
                if op.is_none() {
                    continue;
                }
                let t = target(&method, path);
                if t == Target::Tenant(Action::Admin) {
                    assert!(
                        path.starts_with("/api/v1/admin"),
                        "{method} {path} is unmapped"
                    );
                }
            }
        }
    }

    #[test]
    fn tokens_without_accounts_act_in_roles_from_their_scopes() {
        assert_eq!(roles_of_scopes(Scopes::all()), "admin");
        assert_eq!(
            roles_of_scopes(Scopes::of(&[Scope::Read, Scope::Delete])),
            "admin"
        );
        assert_eq!(
            roles_of_scopes(Scopes::of(&[Scope::Read, Scope::Write])),
            "service"
        );
        assert_eq!(roles_of_scopes(Scopes::of(&[Scope::Read])), "service");
    }

    #[test]
    fn wado_uri_study_parameter_is_decoded() {
        assert_eq!(
            query_param(Some("requestType=WADO&studyUID=1.2%2E3&x=1"), "studyUID").as_deref(),
            Some("1.2.3")
        );
        assert_eq!(query_param(Some("a=b"), "studyUID"), None);
    }
}
