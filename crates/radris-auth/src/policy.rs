//! Authorisation with [Cedar](https://www.cedarpolicy.com) policies.
//!
//! *Who may do what* is data, per tenant: a Cedar policy set written against one schema
//! ([`SCHEMA`]: users in roles, studies with their site and referring physicians, the tenant as
//! a whole). Tenants without their own policies use the shipped [`DEFAULT_POLICIES`]. A policy
//! set only takes effect after it parsed **and** validated against the schema in strict mode;
//! otherwise [`PolicyError::Invalid`] lists what is wrong (safe to show to the administrator who
//! sent it: a client error, never a server error) and the policies in force stay.
//!
//! The hot path, [`PolicyEngine::authorize`], is synchronous and touches no database: the
//! caller describes the study (site, referrers) and passes the user's active break-glass
//! grants, which [`PolicyEngine::break_glass_active`] serves from a short-lived cache.
//!
//! Roles: `admin` (everything in the tenant), `radiologist` (read, store and export every
//! study), `technologist` (read and store the studies of their site), `referring` (read the
//! studies of their own orders), `auditor` (the audit log only, no images), `service` (AI and
//! integrations: read and store).
//!
//! Invariants that no tenant policy can change:
//! * a request whose resource belongs to another tenant is denied before any policy runs;
//! * a policy set that would not let an administrator administer the tenant is refused, so a
//!   tenant cannot lock itself out of repairing its policies;
//! * stored policies that no longer validate (after a schema change) put the tenant in
//!   *lockdown*: only administrators may act, and only to administer.
//!
//! Break-glass (emergency access): a clinical user opens a grant with
//! [`PolicyEngine::break_glass_open`] giving a reason (at least
//! [`BREAK_GLASS_MIN_REASON`] characters) and a duration (default [`BREAK_GLASS_DEFAULT`], at
//! most [`BREAK_GLASS_MAX`]). While it lasts, the policies annotated `@break_glass` apply
//! (by default: clinical roles read any study of the tenant). The caller must write
//! [`BreakGlassGrant::audit_record`] to the audit log when a grant opens, and
//! [`BreakGlassGrant::access_record`] for every access whose [`Decision::via_break_glass`] is
//! set.
//!
//! ```no_run
//! # async fn demo(pool: sqlx::AnyPool) -> Result<(), radris_auth::policy::PolicyError> {
//! use radris_auth::policy::{AccessRequest, Action, PolicyEngine, Resource, StudyAttributes, Subject};
//! use radris_core::{TenantId, Uid};
//!
//! let engine = PolicyEngine::load(pool).await?;
//! let tenant = TenantId::parse("north").unwrap();
//! let subject = Subject::new(tenant.clone(), "dr.who", "referring", "");
//! let study = Resource::Study(StudyAttributes {
//!     tenant: tenant.clone(),
//!     study_uid: Uid::parse("1.2.3").unwrap(),
//!     site: "main".into(),
//!     referrers: vec!["dr.who".into()],
//!     patient: "P1".into(),
//! });
//! let grants = engine.break_glass_active(&tenant, &subject.user).await?;
//! let decision = engine.authorize(&AccessRequest {
//!     subject: &subject,
//!     action: Action::Read,
//!     resource: &study,
//!     break_glass: &grants,
//! });
//! assert!(decision.allowed);
//! # Ok(()) }
//! ```

mod break_glass;
mod compiled;
mod store;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use radris_core::{TenantId, Uid};
use sqlx::AnyPool;

pub use break_glass::{
    BREAK_GLASS_DEFAULT, BREAK_GLASS_MAX, BREAK_GLASS_MIN_REASON, BreakGlassGrant, BreakGlassScope,
};

use compiled::{Base, Compiled};

/// The Cedar schema every tenant's policies are validated against (namespace `Radris`).
pub const SCHEMA: &str = include_str!("policy/schema.cedarschema");

/// The policies a tenant uses until it stores its own.
pub const DEFAULT_POLICIES: &str = include_str!("policy/default.cedar");

/// The largest policy text accepted (bytes).
pub const MAX_POLICY_TEXT: usize = 256 * 1024;

/// What a request wants to do. Study actions take a [`Resource::Study`], tenant actions a
/// [`Resource::Tenant`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// View, query, retrieve a study (QIDO, WADO, C-FIND, C-GET/C-MOVE, REST reads).
    Read,
    /// Store into a study (STOW, C-STORE, uploads).
    Write,
    /// Delete a study, series or instance.
    Delete,
    /// Export a study (de-identified or per subject).
    Export,
    /// Administer the tenant: users, tokens, policies.
    Admin,
    /// Read the audit log.
    Audit,
    /// Open a break-glass grant.
    BreakGlass,
    /// See the RIS: patients, orders, schedules, worklists.
    ViewWorkflow,
    /// Register patients and place, change or cancel orders.
    OrderEntry,
    /// Book appointments, run the auto-scheduler, register arrivals and exam progress.
    Schedule,
    /// Work the reconciliation queue; merge and link patient records.
    Reconcile,
    /// Claim reading cases and move them through preliminary, final and amended.
    ReadCase,
    /// Configure the RIS: procedure catalogue, resources, shifts, routing rules.
    ConfigureWorkflow,
    /// See the RIS analytics dashboard.
    Analytics,
}

impl Action {
    pub const ALL: [Action; 14] = [
        Action::Read,
        Action::Write,
        Action::Delete,
        Action::Export,
        Action::Admin,
        Action::Audit,
        Action::BreakGlass,
        Action::ViewWorkflow,
        Action::OrderEntry,
        Action::Schedule,
        Action::Reconcile,
        Action::ReadCase,
        Action::ConfigureWorkflow,
        Action::Analytics,
    ];

    /// The Cedar action id (`Radris::Action::"<id>"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Delete => "delete",
            Action::Export => "export",
            Action::Admin => "admin",
            Action::Audit => "audit",
            Action::BreakGlass => "breakGlass",
            Action::ViewWorkflow => "viewWorkflow",
            Action::OrderEntry => "orderEntry",
            Action::Schedule => "schedule",
            Action::Reconcile => "reconcile",
            Action::ReadCase => "readCase",
            Action::ConfigureWorkflow => "configureWorkflow",
            Action::Analytics => "analytics",
        }
    }

    /// Whether the action applies to a study (otherwise to the tenant as a whole).
    pub fn on_study(self) -> bool {
        matches!(
            self,
            Action::Read | Action::Write | Action::Delete | Action::Export
        )
    }

    fn index(self) -> usize {
        match self {
            Action::Read => 0,
            Action::Write => 1,
            Action::Delete => 2,
            Action::Export => 3,
            Action::Admin => 4,
            Action::Audit => 5,
            Action::BreakGlass => 6,
            Action::ViewWorkflow => 7,
            Action::OrderEntry => 8,
            Action::Schedule => 9,
            Action::Reconcile => 10,
            Action::ReadCase => 11,
            Action::ConfigureWorkflow => 12,
            Action::Analytics => 13,
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is acting, as the policies see them. Build it once per HTTP request or association
/// and reuse it for every decision (e.g. when filtering query results study by study).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub tenant: TenantId,
    /// The user (or service account) name.
    pub user: String,
    /// Role names (`admin`, `radiologist`, …). Unknown names are harmless: no policy names them.
    pub roles: Vec<String>,
    /// The user's site; empty for none (then no site rule matches).
    pub site: String,
}

impl Subject {
    /// A subject from a comma separated role list, as the users table stores it.
    pub fn new(tenant: TenantId, user: &str, roles: &str, site: &str) -> Self {
        Subject {
            tenant,
            user: user.to_owned(),
            roles: roles
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect(),
            site: site.to_owned(),
        }
    }
}

/// What the policies know of a study. The caller reads it from the index (or, for a study
/// being stored, from where it is being stored): the engine does no IO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StudyAttributes {
    /// The tenant that owns the study.
    pub tenant: TenantId,
    pub study_uid: Uid,
    /// The acquiring site; empty when unknown.
    pub site: String,
    /// User names of the referring physicians of the orders the study belongs to.
    pub referrers: Vec<String>,
    /// Patient ID; empty when unknown.
    pub patient: String,
}

/// The object of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// For [`Action::on_study`] actions.
    Study(StudyAttributes),
    /// The tenant as a whole, for administration, audit and break-glass.
    Tenant(TenantId),
}

impl Resource {
    /// The tenant the resource belongs to.
    pub fn tenant(&self) -> &TenantId {
        match self {
            Resource::Study(s) => &s.tenant,
            Resource::Tenant(t) => t,
        }
    }

    /// `study:<uid>` or `tenant:<id>`, for audit records.
    pub fn describe(&self) -> String {
        match self {
            Resource::Study(s) => format!("study:{}", s.study_uid),
            Resource::Tenant(t) => format!("tenant:{t}"),
        }
    }
}

/// One authorisation question.
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    pub subject: &'a Subject,
    pub action: Action,
    pub resource: &'a Resource,
    /// The subject's active break-glass grants ([`PolicyEngine::break_glass_active`]); the
    /// engine itself checks that one belongs to the subject, has not expired and covers the
    /// resource. Pass `&[]` when there are none.
    pub break_glass: &'a [BreakGlassGrant],
}

/// The answer to an [`AccessRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The `@id`s of the policies that decided: the permits that allowed, or the forbids that
    /// denied (empty when nothing permitted). Built-in checks report `builtin:<name>`.
    pub reasons: Vec<String>,
    /// Allowed only because of a break-glass grant: audit it with
    /// [`BreakGlassGrant::access_record`].
    pub via_break_glass: bool,
    /// Policies that failed to evaluate (they are skipped). Empty for validated policy sets
    /// and well-formed requests.
    pub errors: Vec<String>,
}

impl Decision {
    fn deny_builtin(name: &str) -> Self {
        Decision {
            allowed: false,
            reasons: vec![format!("builtin:{name}")],
            via_break_glass: false,
            errors: Vec::new(),
        }
    }
}

/// A stored version of a tenant's policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersion {
    /// 1, 2, … per tenant; 0 for the shipped defaults of a tenant that never stored any.
    pub number: i64,
    /// Milliseconds since the Unix epoch; 0 for never.
    pub updated_at: i64,
    /// Who stored it (`radris` for the shipped defaults).
    pub updated_by: String,
}

/// A tenant's policies as an administrator sees and edits them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDocument {
    /// The text as it was stored (comments included).
    pub text: String,
    pub version: PolicyVersion,
    /// The tenant uses the shipped defaults ([`DEFAULT_POLICIES`]).
    pub is_default: bool,
}

/// Why a policy operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The policy text does not parse or does not validate against the schema. The messages
    /// name the policy and the line and are safe to show to the administrator who sent it.
    #[error("the policies for tenant {tenant} are invalid: {}", messages.join("; "))]
    Invalid {
        tenant: TenantId,
        messages: Vec<String>,
    },
    /// A break-glass request broke the rules (reason too short, duration too long…).
    #[error("break-glass for {user} in tenant {tenant} refused: {reason}")]
    BreakGlassRefused {
        tenant: TenantId,
        user: String,
        reason: String,
    },
    /// The policies do not permit the subject this action (e.g. opening break-glass).
    #[error("{user} in tenant {tenant} may not {action}")]
    Denied {
        tenant: TenantId,
        user: String,
        action: Action,
    },
    /// Another administrator stored policies at the same moment; read them again and retry.
    #[error("the policies of tenant {tenant} were changed concurrently")]
    Conflict { tenant: TenantId },
    #[error("database error while {what} (tenant {tenant}): {source}")]
    Database {
        what: &'static str,
        /// The tenant, or `*` for all.
        tenant: String,
        #[source]
        source: sqlx::Error,
    },
    /// A bug or a broken build (the shipped schema does not load); never the caller's fault.
    #[error("internal policy engine error: {0}")]
    Internal(String),
}

impl PolicyError {
    /// Whether the caller sent something wrong (HTTP 4xx), as opposed to a server failure.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            PolicyError::Invalid { .. }
                | PolicyError::BreakGlassRefused { .. }
                | PolicyError::Denied { .. }
                | PolicyError::Conflict { .. }
        )
    }

    pub(crate) fn db(what: &'static str, tenant: &TenantId) -> impl FnOnce(sqlx::Error) -> Self {
        let tenant = tenant.to_string();
        move |source| PolicyError::Database {
            what,
            tenant,
            source,
        }
    }
}

/// How long a cached answer of [`PolicyEngine::break_glass_active`] is reused. Grants opened
/// or closed through this engine invalidate the cache at once; the TTL bounds how long
/// another node's change stays unseen.
const GRANT_CACHE_TTL_MS: i64 = 5_000;
/// Cache entries beyond this count trigger a sweep of stale entries.
const GRANT_CACHE_SWEEP: usize = 10_000;

/// The policies in force for one tenant.
struct Active {
    compiled: Arc<Compiled>,
    version: i64,
}

struct CachedGrants {
    fetched_at: i64,
    grants: Arc<[BreakGlassGrant]>,
}

struct Inner {
    pool: AnyPool,
    base: Base,
    /// Tenants with stored policies (or in lockdown); others use `base.defaults`.
    tenants: RwLock<HashMap<TenantId, Active>>,
    /// Tenants whose stored policies failed to load, with why.
    lockdowns: RwLock<HashMap<TenantId, Vec<String>>>,
    grants: Mutex<HashMap<(TenantId, String), CachedGrants>>,
    /// Added to the wall clock; tests move time with it.
    clock_offset_ms: AtomicI64,
}

/// The per-tenant policy sets, the shipped defaults and the break-glass grants. Cheap to
/// clone (one shared state).
#[derive(Clone)]
pub struct PolicyEngine {
    inner: Arc<Inner>,
}

impl PolicyEngine {
    /// Compile the shipped schema and defaults and load every tenant's stored policies.
    ///
    /// A tenant whose stored policies no longer validate is put in lockdown (see
    /// [`PolicyEngine::lockdowns`]) instead of failing the start.
    pub async fn load(pool: AnyPool) -> Result<PolicyEngine, PolicyError> {
        let base = Base::new().map_err(PolicyError::Internal)?;
        let engine = PolicyEngine {
            inner: Arc::new(Inner {
                pool,
                base,
                tenants: RwLock::new(HashMap::new()),
                lockdowns: RwLock::new(HashMap::new()),
                grants: Mutex::new(HashMap::new()),
                clock_offset_ms: AtomicI64::new(0),
            }),
        };
        engine.reload().await?;
        Ok(engine)
    }

    /// Read every tenant's current policies from the database again (for deployments with
    /// several nodes, where another node may have changed them).
    pub async fn reload(&self) -> Result<(), PolicyError> {
        let rows = store::current_all(&self.inner.pool).await?;
        let mut tenants = HashMap::new();
        let mut lockdowns = HashMap::new();
        for row in rows {
            let compiled = if row.is_default {
                self.inner.base.defaults.clone()
            } else {
                match self.inner.base.compile(&row.text) {
                    Ok(c) => Arc::new(c),
                    Err(messages) => {
                        tracing::error!(
                            tenant = %row.tenant,
                            version = row.version,
                            problems = messages.len(),
                            "stored policies do not validate; tenant in lockdown (only administrators may administer)"
                        );
                        lockdowns.insert(row.tenant.clone(), messages);
                        self.inner.base.lockdown.clone()
                    }
                }
            };
            tenants.insert(
                row.tenant,
                Active {
                    compiled,
                    version: row.version,
                },
            );
        }
        // merge by version: a set_policies that finished while we read keeps its newer set
        let mut current = write(&self.inner.tenants);
        let mut current_lockdowns = write(&self.inner.lockdowns);
        for (tenant, active) in tenants {
            if current
                .get(&tenant)
                .is_some_and(|a| a.version > active.version)
            {
                continue;
            }
            match lockdowns.remove(&tenant) {
                Some(messages) => current_lockdowns.insert(tenant.clone(), messages),
                None => current_lockdowns.remove(&tenant),
            };
            current.insert(tenant, active);
        }
        Ok(())
    }

    /// Tenants in lockdown, with the validation messages of their stored policies.
    pub fn lockdowns(&self) -> Vec<(TenantId, Vec<String>)> {
        let mut out: Vec<_> = read(&self.inner.lockdowns)
            .iter()
            .map(|(t, m)| (t.clone(), m.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Decide one request. Synchronous and without IO; safe to call per study of a result
    /// list.
    pub fn authorize(&self, req: &AccessRequest<'_>) -> Decision {
        let subject = req.subject;
        if req.resource.tenant() != &subject.tenant {
            return Decision::deny_builtin("tenant-isolation");
        }
        if req.action.on_study() != matches!(req.resource, Resource::Study(_)) {
            return Decision::deny_builtin("resource-kind");
        }
        let now = self.now();
        let break_glass = req
            .break_glass
            .iter()
            .any(|g| g.covers(subject, req.resource, now));
        let compiled = self.compiled_for(&subject.tenant);
        self.inner
            .base
            .evaluate(&compiled, subject, req.action, req.resource, break_glass)
    }

    /// Parse and validate a policy text without storing it; the number of policies.
    pub fn validate(&self, tenant: &TenantId, text: &str) -> Result<usize, PolicyError> {
        self.inner
            .base
            .compile(text)
            .map(|c| c.len())
            .map_err(|messages| PolicyError::Invalid {
                tenant: tenant.clone(),
                messages,
            })
    }

    /// Replace a tenant's policies. They take effect at once, and only if they parse and
    /// validate; otherwise the policies in force stay and [`PolicyError::Invalid`] says why.
    /// The caller audits the change (`auth.policy.set`).
    pub async fn set_policies(
        &self,
        tenant: &TenantId,
        text: &str,
        by: &str,
    ) -> Result<PolicyVersion, PolicyError> {
        let owned = text.to_owned();
        let engine = self.clone();
        // validation is CPU work proportional to the text (up to MAX_POLICY_TEXT)
        let compiled = tokio::task::spawn_blocking(move || engine.inner.base.compile(&owned))
            .await
            .map_err(|e| PolicyError::Internal(format!("policy validation task: {e}")))?
            .map_err(|messages| PolicyError::Invalid {
                tenant: tenant.clone(),
                messages,
            })?;
        let version = store::insert(&self.inner.pool, tenant, text, false, by, self.now()).await?;
        self.install(tenant, Arc::new(compiled), version.number);
        Ok(version)
    }

    /// Go back to the shipped defaults (stored as a new version, so the history stays).
    pub async fn reset_to_default(
        &self,
        tenant: &TenantId,
        by: &str,
    ) -> Result<PolicyVersion, PolicyError> {
        let version = store::insert(&self.inner.pool, tenant, "", true, by, self.now()).await?;
        self.install(tenant, self.inner.base.defaults.clone(), version.number);
        Ok(version)
    }

    /// The tenant's current policies, as stored.
    pub async fn policies(&self, tenant: &TenantId) -> Result<PolicyDocument, PolicyError> {
        Ok(match store::current(&self.inner.pool, tenant).await? {
            Some(row) if !row.is_default => PolicyDocument {
                text: row.text,
                version: row.version_info,
                is_default: false,
            },
            Some(row) => PolicyDocument {
                text: DEFAULT_POLICIES.to_owned(),
                version: row.version_info,
                is_default: true,
            },
            None => PolicyDocument {
                text: DEFAULT_POLICIES.to_owned(),
                version: PolicyVersion {
                    number: 0,
                    updated_at: 0,
                    updated_by: "radris".into(),
                },
                is_default: true,
            },
        })
    }

    /// Open a break-glass grant for `subject`: the policies must permit
    /// [`Action::BreakGlass`] on the tenant, the reason must be at least
    /// [`BREAK_GLASS_MIN_REASON`] characters and the duration (default
    /// [`BREAK_GLASS_DEFAULT`]) at most [`BREAK_GLASS_MAX`].
    ///
    /// The caller **must** write [`BreakGlassGrant::audit_record`] to the audit log.
    pub async fn break_glass_open(
        &self,
        subject: &Subject,
        reason: &str,
        duration: Option<Duration>,
        scope: BreakGlassScope,
    ) -> Result<BreakGlassGrant, PolicyError> {
        let reason = break_glass::check_request(subject, reason, duration)?;
        let decision = self.authorize(&AccessRequest {
            subject,
            action: Action::BreakGlass,
            resource: &Resource::Tenant(subject.tenant.clone()),
            break_glass: &[],
        });
        if !decision.allowed {
            return Err(PolicyError::Denied {
                tenant: subject.tenant.clone(),
                user: subject.user.clone(),
                action: Action::BreakGlass,
            });
        }
        let now = self.now();
        let expires_at = now.saturating_add(
            i64::try_from(duration.unwrap_or(BREAK_GLASS_DEFAULT).as_millis()).unwrap_or(i64::MAX),
        );
        let grant = BreakGlassGrant {
            id: uuid::Uuid::now_v7().to_string(),
            tenant: subject.tenant.clone(),
            user: subject.user.clone(),
            scope,
            reason,
            created_at: now,
            expires_at,
        };
        break_glass::insert(&self.inner.pool, &grant).await?;
        self.forget_grants(&subject.tenant, &subject.user);
        Ok(grant)
    }

    /// End a grant before it expires; whether it was open. The caller audits it with
    /// [`BreakGlassGrant::close_record`].
    pub async fn break_glass_close(
        &self,
        tenant: &TenantId,
        user: &str,
        grant_id: &str,
    ) -> Result<bool, PolicyError> {
        let closed =
            break_glass::close(&self.inner.pool, tenant, user, grant_id, self.now()).await?;
        self.forget_grants(tenant, user);
        Ok(closed)
    }

    /// The user's grants that are open and not expired (usually none), from a cache whose
    /// entries live five seconds, so that the hot path does not query the database per
    /// request. Grants opened or closed through this engine show at once.
    pub async fn break_glass_active(
        &self,
        tenant: &TenantId,
        user: &str,
    ) -> Result<Arc<[BreakGlassGrant]>, PolicyError> {
        let now = self.now();
        let key = (tenant.clone(), user.to_owned());
        if let Some(hit) = lock(&self.inner.grants).get(&key)
            && now - hit.fetched_at < GRANT_CACHE_TTL_MS
        {
            return Ok(live(&hit.grants, now));
        }
        let grants: Arc<[BreakGlassGrant]> =
            break_glass::active(&self.inner.pool, tenant, user, now)
                .await?
                .into();
        let mut cache = lock(&self.inner.grants);
        if cache.len() >= GRANT_CACHE_SWEEP {
            cache.retain(|_, c| now - c.fetched_at < GRANT_CACHE_TTL_MS);
        }
        cache.insert(
            key,
            CachedGrants {
                fetched_at: now,
                grants: grants.clone(),
            },
        );
        Ok(grants)
    }

    fn forget_grants(&self, tenant: &TenantId, user: &str) {
        lock(&self.inner.grants).remove(&(tenant.clone(), user.to_owned()));
    }

    fn compiled_for(&self, tenant: &TenantId) -> Arc<Compiled> {
        read(&self.inner.tenants)
            .get(tenant)
            .map(|a| a.compiled.clone())
            .unwrap_or_else(|| self.inner.base.defaults.clone())
    }

    /// Put a newly stored version in force, unless a newer one already is (two
    /// administrators storing at once).
    fn install(&self, tenant: &TenantId, compiled: Arc<Compiled>, version: i64) {
        let mut tenants = write(&self.inner.tenants);
        if tenants.get(tenant).is_some_and(|a| a.version > version) {
            return;
        }
        tenants.insert(tenant.clone(), Active { compiled, version });
        write(&self.inner.lockdowns).remove(tenant);
    }

    fn now(&self) -> i64 {
        crate::now_millis().saturating_add(self.inner.clock_offset_ms.load(Ordering::Relaxed))
    }

    #[cfg(test)]
    fn advance_clock(&self, by: Duration) {
        self.inner
            .clock_offset_ms
            .fetch_add(by.as_millis() as i64, Ordering::Relaxed);
    }
}

fn live(grants: &Arc<[BreakGlassGrant]>, now: i64) -> Arc<[BreakGlassGrant]> {
    if grants.iter().all(|g| g.expires_at > now) {
        grants.clone()
    } else {
        grants
            .iter()
            .filter(|g| g.expires_at > now)
            .cloned()
            .collect()
    }
}

// A poisoned lock only means another thread panicked while holding it; the maps stay
// consistent (every write is a single insert/remove/replace), so keep serving.
fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

fn lock<T>(l: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    l.lock().unwrap_or_else(|e| e.into_inner())
}
