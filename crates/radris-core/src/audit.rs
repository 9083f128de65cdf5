//! The audit vocabulary shared by every service that touches patient data. Services describe
//! what happened as an [`AuditRecord`] and hand it to an [`AuditSink`]; `radris-auth` owns the
//! sink that chains records in the database. Keeping the trait here lets the DIMSE and HTTP
//! layers audit without depending on how the log is stored.

use std::sync::Arc;

/// Whether the audited action succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Refused by authentication or authorisation.
    Denied,
    /// Failed for another reason (bad input, storage failure).
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failure => "failure",
        }
    }
}

/// One audited event: who did what to which resource, from where, with what outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Tenant the action ran in (`-` when no tenant could be established, e.g. a failed login).
    pub tenant: String,
    /// `user:<name>`, `token:<id>`, `ae:<AE title>`, `anonymous`, `system`.
    pub actor: String,
    /// Dotted action name, e.g. `dicomweb.qido.studies`, `dimse.c-store`, `auth.token.denied`.
    pub action: String,
    pub outcome: Outcome,
    /// What was touched: a study/series/instance UID path or a query summary.
    pub resource: String,
    /// Free text detail (query keys, counts, the reason of a failure). Never secrets.
    pub detail: String,
    /// Network source (peer address) or `local`.
    pub source: String,
}

impl AuditRecord {
    /// A successful action of `actor` in `tenant`.
    pub fn success(
        tenant: &str,
        actor: &str,
        action: &str,
        resource: String,
        detail: String,
        source: &str,
    ) -> Self {
        AuditRecord {
            tenant: tenant.to_owned(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            outcome: Outcome::Success,
            resource,
            detail,
            source: source.to_owned(),
        }
    }
}

/// Where audit records go. Implementations must not block for long: they are called on
/// request paths and DIMSE threads.
pub trait AuditSink: Send + Sync {
    fn record(&self, record: AuditRecord);
}

/// A sink that drops everything, for tools and tests that run without an audit log.
pub struct NoAudit;

impl AuditSink for NoAudit {
    fn record(&self, _record: AuditRecord) {}
}

/// Shared handle to the audit sink.
pub type Audit = Arc<dyn AuditSink>;
