//! Authentication, scope check and audit for every protected route, as one middleware so no
//! route can forget any of the three.
//!
//! The tenant comes from the credential only. A request that tries to name a tenant itself
//! (a `tenant` or `tenant_id` query parameter) is refused.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use radris_auth::{AuthError, Principal, Scope, Scopes};
use radris_core::TenantId;
use radris_core::audit::{AuditRecord, Outcome};

use super::AppState;
use super::problem::ApiError;

/// The scope a request needs: reads need `read`, stores `write`, deletions `delete`,
/// anything under `/api/v1/admin` needs `admin`.
pub fn required_scope(method: &Method, route: &str) -> Scope {
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
    req.extensions_mut().insert(principal);
    let resp = next.run(req).await;
    let status = resp.status();
    let outcome = if status.is_success() || status.is_redirection() {
        Outcome::Success
    } else if status.as_u16() == 401 || status.as_u16() == 403 {
        Outcome::Denied
    } else {
        Outcome::Failure
    };
    let detail = if detail.is_empty() {
        format!("status={}", status.as_u16())
    } else {
        format!("status={} {detail}", status.as_u16())
    };
    audit(&tenant, &actor, outcome, detail);
    resp
}

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
