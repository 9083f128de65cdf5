//! [`Reports`]: templates, reports, signing, critical results and peer review on the index
//! (tables of migration 14), tied to the order workflow of the RIS: signing a report moves its
//! order (preliminary, final, amended) through `radris_ris::Ris::transition`, which also checks
//! that the signer holds the case.
//!
//! **Invariants:** a signed version is never updated (rows of `report_versions` are only
//! inserted); the working copy of a final report differs from its last signed content only by
//! one new addendum; every change is audited.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use radris_core::TenantId;
use radris_core::audit::{Audit, AuditRecord};
use radris_ris::workflow::OrderState;
use radris_ris::{Actor, Ris, RisError};
use radris_store::Index;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::model::{ReportContent, ReportStatus, check_change};
use crate::sign::{Sealed, VerifyError, seal, verify};
use crate::template::Template;

/// Why a report operation was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    #[error("{0} not found")]
    NotFound(String),
    /// Bad input (HTTP 422).
    #[error("{0}")]
    Invalid(String),
    /// Conflicts with the current state (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// Required fields are missing or wrong; nothing was signed.
    #[error("the report cannot be signed: {}", .0.join("; "))]
    Incomplete(Vec<String>),
    #[error(transparent)]
    Workflow(#[from] RisError),
    #[error("index: {0}")]
    Database(String),
}

fn db(what: &'static str) -> impl FnOnce(sqlx::Error) -> ReportError {
    move |e| ReportError::Database(format!("{what}: {e}"))
}

fn s(r: &AnyRow, c: &str) -> Result<String, ReportError> {
    r.try_get::<String, _>(c)
        .map_err(|e| ReportError::Database(format!("column {c}: {e}")))
}

fn n(r: &AnyRow, c: &str) -> Result<i64, ReportError> {
    r.try_get::<i64, _>(c)
        .map_err(|e| ReportError::Database(format!("column {c}: {e}")))
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn iso(ms: i64) -> Option<String> {
    (ms > 0).then(|| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default()
    })
}

/// A template of the tenant's library.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateInfo {
    pub id: String,
    pub version: i64,
    pub title: String,
    pub created_by: String,
    pub created_at: Option<String>,
}

/// A signed version, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    pub version: i64,
    pub status: String,
    pub signer: String,
    pub signed_at: Option<String>,
    pub sha256: String,
    pub sr_sop_uid: String,
}

/// A critical result and its acknowledgement.
#[derive(Debug, Clone, Serialize)]
pub struct Critical {
    pub text: String,
    pub flagged_at: Option<String>,
    pub acknowledged_by: String,
    pub acknowledged_at: Option<String>,
    /// Minutes from flag to acknowledgement.
    pub communication_min: Option<f64>,
}

/// A report as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub id: String,
    pub order_id: String,
    pub accession: String,
    pub study_uid: String,
    pub patient_name: String,
    pub patient_id: String,
    pub procedure: String,
    pub order_state: String,
    pub template_id: String,
    pub template_version: i64,
    pub status: ReportStatus,
    /// Send back with the next save (optimistic concurrency).
    pub rev: i64,
    pub content: ReportContent,
    pub author: String,
    pub versions: Vec<VersionInfo>,
    pub critical: Option<Critical>,
    /// For the lung-nodule template: the Lung-RADS assessment computed from the findings
    /// (the `lungrads_category` field is filled from it on every save).
    pub lung_rads: Option<crate::lungrads::Assessment>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

/// The outcome of checking a stored signature.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub version: i64,
    pub valid: bool,
    pub sha256: String,
    pub signer: String,
    pub signed_at: Option<String>,
    pub problem: Option<String>,
}

/// The report service.
#[derive(Clone)]
pub struct Reports {
    index: Index,
    ris: Ris,
    audit: Audit,
    key: Arc<SigningKey>,
}

impl Reports {
    pub fn new(index: Index, ris: Ris, audit: Audit, key: Arc<SigningKey>) -> Self {
        Reports {
            index,
            ris,
            audit,
            key,
        }
    }

    fn audit(
        &self,
        tenant: &TenantId,
        actor: &Actor,
        action: &str,
        resource: String,
        detail: String,
    ) {
        self.audit.record(AuditRecord::success(
            tenant.as_str(),
            &actor.actor,
            action,
            resource,
            detail,
            &actor.source,
        ));
    }

    pub(crate) fn index(&self) -> &Index {
        &self.index
    }

    pub(crate) fn audit_pub(
        &self,
        tenant: &TenantId,
        actor: &Actor,
        action: &str,
        resource: String,
        detail: String,
    ) {
        self.audit(tenant, actor, action, resource, detail);
    }

    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, ReportError> {
        self.index.pool().acquire().await.map_err(db("acquire"))
    }

    // ---- templates

    /// The tenant's templates (latest version of each); the starter library is installed the
    /// first time a tenant looks.
    pub async fn templates(&self, tenant: &TenantId) -> Result<Vec<TemplateInfo>, ReportError> {
        let mut conn = self.conn().await?;
        let any = sqlx::query("SELECT id FROM report_templates WHERE tenant_id = $1 LIMIT 1")
            .bind(tenant.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db("templates"))?;
        drop(conn);
        if any.is_none() {
            for (id, xhtml) in crate::template::starter_templates() {
                self.put_template(tenant, id, xhtml, &Actor::system())
                    .await?;
            }
        }
        let mut conn = self.conn().await?;
        let rows = sqlx::query(
            "SELECT t.id, t.version, t.title, t.created_by, t.created_at FROM report_templates t \
             WHERE t.tenant_id = $1 AND t.version = (SELECT MAX(version) FROM report_templates x \
             WHERE x.tenant_id = t.tenant_id AND x.id = t.id) ORDER BY t.title",
        )
        .bind(tenant.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(db("templates"))?;
        rows.iter()
            .map(|r| {
                Ok(TemplateInfo {
                    id: s(r, "id")?,
                    version: n(r, "version")?,
                    title: s(r, "title")?,
                    created_by: s(r, "created_by")?,
                    created_at: iso(n(r, "created_at")?),
                })
            })
            .collect()
    }

    /// A template's XHTML (latest version when `version` is None).
    pub async fn template_text(
        &self,
        tenant: &TenantId,
        id: &str,
        version: Option<i64>,
    ) -> Result<(i64, String), ReportError> {
        let mut conn = self.conn().await?;
        let row = sqlx::query(
            "SELECT version, xhtml FROM report_templates WHERE tenant_id = $1 AND id = $2 \
             AND ($3 = 0 OR version = $3) ORDER BY version DESC LIMIT 1",
        )
        .bind(tenant.as_str())
        .bind(id)
        .bind(version.unwrap_or(0))
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("template"))?
        .ok_or_else(|| ReportError::NotFound(format!("template {id}")))?;
        Ok((n(&row, "version")?, s(&row, "xhtml")?))
    }

    async fn template(
        &self,
        tenant: &TenantId,
        id: &str,
        version: i64,
    ) -> Result<Template, ReportError> {
        let (_, text) = self.template_text(tenant, id, Some(version)).await?;
        Template::parse(&text)
            .map_err(|e| ReportError::Database(format!("stored template {id} v{version}: {e}")))
    }

    /// Add a template, or a new version of one. The XHTML must parse as an MRRT template.
    pub async fn put_template(
        &self,
        tenant: &TenantId,
        id: &str,
        xhtml: &str,
        actor: &Actor,
    ) -> Result<TemplateInfo, ReportError> {
        if id.is_empty()
            || id.len() > 64
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ReportError::Invalid(
                "a template id is 1–64 of A–Z, a–z, 0–9, '-' and '_'".into(),
            ));
        }
        let t = Template::parse(xhtml)
            .map_err(|e| ReportError::Invalid(format!("invalid template: {e}")))?;
        let title = t.title().to_owned();
        let mut conn = self.conn().await?;
        let mut tx = self
            .index
            .begin_write(&mut conn)
            .await
            .map_err(|e| ReportError::Database(e.to_string()))?;
        let version: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) + 1 AS v FROM report_templates WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db("template version"))?
            .try_get("v")
            .map_err(db("template version"))?;
        let now = now_millis();
        sqlx::query(
            "INSERT INTO report_templates (tenant_id, id, version, title, xhtml, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(tenant.as_str())
        .bind(id)
        .bind(version)
        .bind(title.as_str())
        .bind(xhtml)
        .bind(actor.actor.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db("insert template"))?;
        tx.commit().await.map_err(db("commit"))?;
        self.audit(
            tenant,
            actor,
            "report.template.put",
            format!("template {id} v{version}"),
            title.clone(),
        );
        Ok(TemplateInfo {
            id: id.to_owned(),
            version,
            title,
            created_by: actor.actor.clone(),
            created_at: iso(now),
        })
    }

    // ---- reports

    /// Start the report of an order (one per order) from a template.
    pub async fn create(
        &self,
        tenant: &TenantId,
        order_id: &str,
        template_id: &str,
        actor: &Actor,
    ) -> Result<Report, ReportError> {
        let order = match self.ris.order(tenant, order_id, false).await {
            Ok(o) => o,
            Err(RisError::NotFound(_)) => {
                return Err(ReportError::Invalid(format!("unknown order {order_id}")));
            }
            Err(e) => return Err(e.into()),
        };
        match order.state {
            OrderState::Cancelled => {
                return Err(ReportError::Conflict(format!(
                    "order {} is cancelled: it gets no report",
                    order.accession
                )));
            }
            OrderState::Ordered | OrderState::Scheduled | OrderState::Arrived => {
                return Err(ReportError::Conflict(format!(
                    "order {} is {}: there are no images to report yet",
                    order.accession, order.state
                )));
            }
            _ => {}
        }
        self.templates(tenant).await?; // the starter library on first use
        let (version, _) = match self.template_text(tenant, template_id, None).await {
            Err(ReportError::NotFound(_)) => {
                return Err(ReportError::Invalid(format!(
                    "unknown template {template_id}"
                )));
            }
            other => other?,
        };
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_millis();
        let mut conn = self.conn().await?;
        let exists = sqlx::query("SELECT id FROM reports WHERE tenant_id = $1 AND order_id = $2")
            .bind(tenant.as_str())
            .bind(order_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db("report lookup"))?;
        if let Some(r) = exists {
            return Err(ReportError::Conflict(format!(
                "order {} has a report already: {}",
                order.accession,
                s(&r, "id")?
            )));
        }
        sqlx::query(
            "INSERT INTO reports (tenant_id, id, order_id, template_id, template_version, status, draft_json, draft_rev, \
             signed_versions, author, critical, critical_at, critical_ack_by, critical_ack_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'draft', $6, 1, 0, $7, '', 0, '', 0, $8, $8)",
        )
        .bind(tenant.as_str())
        .bind(id.as_str())
        .bind(order_id)
        .bind(template_id)
        .bind(version)
        .bind(serde_json::to_string(&ReportContent::default()).unwrap_or_default())
        .bind(actor.user.as_str())
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                ReportError::Conflict(format!("order {} has a report already", order.accession))
            }
            other => ReportError::Database(format!("insert report: {other}")),
        })?;
        drop(conn);
        self.audit(
            tenant,
            actor,
            "report.create",
            format!("report {id} order {order_id}"),
            format!("template {template_id} v{version}"),
        );
        self.get(tenant, &id).await
    }

    async fn row(&self, tenant: &TenantId, id: &str) -> Result<AnyRow, ReportError> {
        let mut conn = self.conn().await?;
        sqlx::query(
            "SELECT id, order_id, template_id, template_version, status, draft_json, draft_rev, signed_versions, author, \
             critical, critical_at, critical_ack_by, critical_ack_at, created_at, updated_at FROM reports \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("report"))?
        .ok_or_else(|| ReportError::NotFound(format!("report {id}")))
    }

    /// The report of an order, if any.
    pub async fn id_of_order(
        &self,
        tenant: &TenantId,
        order_id: &str,
    ) -> Result<Option<String>, ReportError> {
        let mut conn = self.conn().await?;
        let row = sqlx::query("SELECT id FROM reports WHERE tenant_id = $1 AND order_id = $2")
            .bind(tenant.as_str())
            .bind(order_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db("report of order"))?;
        row.map(|r| s(&r, "id")).transpose()
    }

    pub async fn get(&self, tenant: &TenantId, id: &str) -> Result<Report, ReportError> {
        let r = self.row(tenant, id).await?;
        let order = self.ris.order(tenant, &s(&r, "order_id")?, false).await?;
        let content: ReportContent = serde_json::from_str(&s(&r, "draft_json")?)
            .map_err(|e| ReportError::Database(format!("stored draft: {e}")))?;
        let status = ReportStatus::parse(&s(&r, "status")?)
            .ok_or_else(|| ReportError::Database("stored report status".into()))?;
        let critical_text = s(&r, "critical")?;
        let lung_rads = if s(&r, "template_id")? == crate::lungrads::LUNG_NODULE_TEMPLATE_ID {
            values_of(&content)
                .ok()
                .and_then(|v| crate::lungrads::from_template_values(&v))
                .and_then(|exam| crate::lungrads::assess(&exam).ok())
        } else {
            None
        };
        let (flag_at, ack_at) = (n(&r, "critical_at")?, n(&r, "critical_ack_at")?);
        Ok(Report {
            id: id.to_owned(),
            order_id: order.id.clone(),
            accession: order.accession.clone(),
            study_uid: order.study_uid.clone(),
            patient_name: order.patient.name.clone(),
            patient_id: order.patient.patient_id.clone(),
            procedure: order.procedure.name.clone(),
            order_state: order.state.as_str().to_owned(),
            template_id: s(&r, "template_id")?,
            template_version: n(&r, "template_version")?,
            status,
            rev: n(&r, "draft_rev")?,
            content,
            author: s(&r, "author")?,
            versions: self.versions(tenant, id).await?,
            critical: (!critical_text.is_empty()).then(|| Critical {
                text: critical_text,
                flagged_at: iso(flag_at),
                acknowledged_by: s(&r, "critical_ack_by").unwrap_or_default(),
                acknowledged_at: iso(ack_at),
                communication_min: (ack_at > 0 && flag_at > 0)
                    .then(|| (ack_at - flag_at) as f64 / 60_000.0),
            }),
            lung_rads,
            created_at: iso(n(&r, "created_at")?),
            updated_at: iso(n(&r, "updated_at")?),
        })
    }

    pub async fn versions(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Vec<VersionInfo>, ReportError> {
        let mut conn = self.conn().await?;
        let rows = sqlx::query(
            "SELECT version, status, signer, signed_at, sha256, sr_sop_uid FROM report_versions \
             WHERE tenant_id = $1 AND report_id = $2 ORDER BY version",
        )
        .bind(tenant.as_str())
        .bind(id)
        .fetch_all(&mut *conn)
        .await
        .map_err(db("versions"))?;
        rows.iter()
            .map(|r| {
                Ok(VersionInfo {
                    version: n(r, "version")?,
                    status: s(r, "status")?,
                    signer: s(r, "signer")?,
                    signed_at: iso(n(r, "signed_at")?),
                    sha256: s(r, "sha256")?,
                    sr_sop_uid: s(r, "sr_sop_uid")?,
                })
            })
            .collect()
    }

    /// The content of the last signed version, if any.
    async fn last_signed(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<(i64, ReportContent)>, ReportError> {
        let mut conn = self.conn().await?;
        let row = sqlx::query(
            "SELECT version, canonical FROM report_versions WHERE tenant_id = $1 AND report_id = $2 ORDER BY version DESC LIMIT 1",
        )
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("last version"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let doc: serde_json::Value = serde_json::from_str(&s(&row, "canonical")?)
            .map_err(|e| ReportError::Database(format!("stored version: {e}")))?;
        let content: ReportContent = serde_json::from_value(doc["content"].clone())
            .map_err(|e| ReportError::Database(format!("stored version content: {e}")))?;
        Ok(Some((n(&row, "version")?, content)))
    }

    /// Autosave the working copy. `rev` is the revision the client last read: a save over a
    /// newer one is refused (409) and changes nothing.
    pub async fn save(
        &self,
        tenant: &TenantId,
        id: &str,
        rev: i64,
        content: &ReportContent,
        actor: &Actor,
    ) -> Result<i64, ReportError> {
        let r = self.row(tenant, id).await?;
        let status = ReportStatus::parse(&s(&r, "status")?).unwrap_or(ReportStatus::Draft);
        let signed = self.last_signed(tenant, id).await?;
        check_change(status, signed.as_ref().map(|x| &x.1), content)
            .map_err(ReportError::Conflict)?;
        let template = self
            .template(tenant, &s(&r, "template_id")?, n(&r, "template_version")?)
            .await?;
        let content = &with_computed_category(&s(&r, "template_id")?, content)?;
        template
            .validate_partial(&values_of(content)?)
            .map_err(|problems| ReportError::Invalid(describe(&problems)))?;
        let json =
            serde_json::to_string(content).map_err(|e| ReportError::Invalid(e.to_string()))?;
        let mut conn = self.conn().await?;
        let done = sqlx::query(
            "UPDATE reports SET draft_json = $1, draft_rev = draft_rev + 1, updated_at = $2 \
             WHERE tenant_id = $3 AND id = $4 AND draft_rev = $5",
        )
        .bind(json)
        .bind(now_millis())
        .bind(tenant.as_str())
        .bind(id)
        .bind(rev)
        .execute(&mut *conn)
        .await
        .map_err(db("save report"))?
        .rows_affected();
        if done == 0 {
            return Err(ReportError::Conflict(format!(
                "the report was saved elsewhere since revision {rev}; read it again"
            )));
        }
        self.audit(
            tenant,
            actor,
            "report.save",
            format!("report {id}"),
            format!("rev {}", rev + 1),
        );
        Ok(rev + 1)
    }

    /// Sign the working copy as `to`. The signer must hold the case (the RIS checks it while
    /// moving the order); every required field must be filled. Returns the new version.
    pub async fn sign(
        &self,
        tenant: &TenantId,
        id: &str,
        to: ReportStatus,
        actor: &Actor,
    ) -> Result<VersionInfo, ReportError> {
        let r = self.row(tenant, id).await?;
        let status = ReportStatus::parse(&s(&r, "status")?).unwrap_or(ReportStatus::Draft);
        if !status.can_sign(to) {
            return Err(ReportError::Conflict(format!(
                "a {} report cannot be signed as {}",
                status.as_str(),
                to.as_str()
            )));
        }
        let content: ReportContent = serde_json::from_str(&s(&r, "draft_json")?)
            .map_err(|e| ReportError::Database(format!("stored draft: {e}")))?;
        let signed = self.last_signed(tenant, id).await?;
        if to == ReportStatus::Amended {
            let before = signed.as_ref().map_or(0, |x| x.1.addenda.len());
            if content.addenda.len() != before + 1
                || content.addenda.last().is_none_or(|a| a.trim().is_empty())
            {
                return Err(ReportError::Conflict(
                    "write the addendum before signing it".into(),
                ));
            }
        }
        let template = self
            .template(tenant, &s(&r, "template_id")?, n(&r, "template_version")?)
            .await?;
        template
            .validate(&values_of(&content)?)
            .map_err(|problems| {
                ReportError::Incomplete(problems.iter().map(|p| p.to_string()).collect())
            })?;
        let order_id = s(&r, "order_id")?;
        // the order moves first: it refuses a signer who does not hold the case
        let order_to = match to {
            ReportStatus::Preliminary => OrderState::Preliminary,
            ReportStatus::Final => OrderState::Final,
            _ => OrderState::Amended,
        };
        let order = self
            .ris
            .transition(
                tenant,
                &order_id,
                order_to,
                actor,
                &format!("report {id} signed"),
            )
            .await?;
        let version = signed.as_ref().map_or(0, |x| x.0) + 1;
        let signed_at = now_millis();
        let doc = serde_json::json!({
            "report_id": id,
            "version": version,
            "status": to.as_str(),
            "order_id": order_id,
            "accession": order.accession,
            "patient_id": order.patient.patient_id,
            "patient_name": order.patient.name,
            "study_uid": order.study_uid,
            "procedure": order.procedure.name,
            "template": {"id": s(&r, "template_id")?, "version": n(&r, "template_version")?},
            "content": content,
            "signer": actor.user,
            "signed_at": iso(signed_at),
        });
        let sealed = seal(&doc, &self.key);
        let mut conn = self.conn().await?;
        let mut tx = self
            .index
            .begin_write(&mut conn)
            .await
            .map_err(|e| ReportError::Database(e.to_string()))?;
        sqlx::query(
            "INSERT INTO report_versions (tenant_id, report_id, version, status, canonical, sha256, signature, key_id, signer, signed_at, sr_sop_uid) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, '')",
        )
        .bind(tenant.as_str())
        .bind(id)
        .bind(version)
        .bind(to.as_str())
        .bind(sealed.canonical.as_str())
        .bind(sealed.sha256.as_str())
        .bind(sealed.signature.as_str())
        .bind(sealed.key_id.as_str())
        .bind(actor.user.as_str())
        .bind(signed_at)
        .execute(&mut *tx)
        .await
        .map_err(db("insert version"))?;
        sqlx::query(
            "UPDATE reports SET status = $1, signed_versions = $2, draft_rev = draft_rev + 1, updated_at = $3 WHERE tenant_id = $4 AND id = $5",
        )
        .bind(to.as_str())
        .bind(version)
        .bind(signed_at)
        .bind(tenant.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db("report status"))?;
        tx.commit().await.map_err(db("commit"))?;
        self.audit(
            tenant,
            actor,
            "report.sign",
            format!("report {id} order {order_id}"),
            format!("v{version} {} sha256={}", to.as_str(), sealed.sha256),
        );
        Ok(VersionInfo {
            version,
            status: to.as_str().to_owned(),
            signer: actor.user.clone(),
            signed_at: iso(signed_at),
            sha256: sealed.sha256,
            sr_sop_uid: String::new(),
        })
    }

    /// The signed document of a version (canonical JSON).
    pub async fn signed_document(
        &self,
        tenant: &TenantId,
        id: &str,
        version: i64,
    ) -> Result<serde_json::Value, ReportError> {
        let sealed = self.sealed(tenant, id, version).await?.1;
        serde_json::from_str(&sealed.canonical)
            .map_err(|e| ReportError::Database(format!("stored version: {e}")))
    }

    async fn sealed(
        &self,
        tenant: &TenantId,
        id: &str,
        version: i64,
    ) -> Result<(AnyRow, Sealed), ReportError> {
        let mut conn = self.conn().await?;
        let row = sqlx::query(
            "SELECT canonical, sha256, signature, key_id, signer, signed_at FROM report_versions \
             WHERE tenant_id = $1 AND report_id = $2 AND version = $3",
        )
        .bind(tenant.as_str())
        .bind(id)
        .bind(version)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("version"))?
        .ok_or_else(|| ReportError::NotFound(format!("version {version} of report {id}")))?;
        let sealed = Sealed {
            canonical: s(&row, "canonical")?,
            sha256: s(&row, "sha256")?,
            signature: s(&row, "signature")?,
            key_id: s(&row, "key_id")?,
        };
        Ok((row, sealed))
    }

    /// Check a stored signature against this server's key.
    pub async fn verify(
        &self,
        tenant: &TenantId,
        id: &str,
        version: i64,
    ) -> Result<Verification, ReportError> {
        let (row, sealed) = self.sealed(tenant, id, version).await?;
        let outcome: Result<(), VerifyError> = verify(&sealed, &self.key.verifying_key());
        Ok(Verification {
            version,
            valid: outcome.is_ok(),
            sha256: sealed.sha256,
            signer: s(&row, "signer")?,
            signed_at: iso(n(&row, "signed_at")?),
            problem: outcome.err().map(|e| e.to_string()),
        })
    }

    /// The institution name and logo (PNG) printed on the tenant's reports.
    pub async fn branding(
        &self,
        tenant: &TenantId,
    ) -> Result<(String, Option<Vec<u8>>), ReportError> {
        use base64::Engine;
        let mut conn = self.conn().await?;
        let rows = sqlx::query("SELECT name, value FROM ris_settings WHERE tenant_id = $1 AND name IN ('institution', 'logo_png')")
            .bind(tenant.as_str())
            .fetch_all(&mut *conn)
            .await
            .map_err(db("branding"))?;
        let (mut name, mut logo) = (String::from("RADRIS Radiology"), None);
        for r in &rows {
            match s(r, "name")?.as_str() {
                "institution" => name = s(r, "value")?,
                _ => {
                    logo = base64::engine::general_purpose::STANDARD
                        .decode(s(r, "value")?)
                        .ok()
                }
            }
        }
        Ok((name, logo))
    }

    /// Set the institution name and logo (a PNG, checked by rendering a page with it).
    pub async fn set_branding(
        &self,
        tenant: &TenantId,
        institution: &str,
        logo_png: Option<&[u8]>,
        actor: &Actor,
    ) -> Result<(), ReportError> {
        use base64::Engine;
        let institution = institution.trim();
        if institution.is_empty() || institution.chars().count() > 128 {
            return Err(ReportError::Invalid(
                "the institution name is 1 to 128 characters".into(),
            ));
        }
        if let Some(png) = logo_png {
            if png.len() > 1 << 20 {
                return Err(ReportError::Invalid("the logo is larger than 1 MiB".into()));
            }
            let probe = crate::pdf::PdfReport {
                institution: institution.to_owned(),
                logo_png: Some(png.to_vec()),
                ..Default::default()
            };
            crate::pdf::render(&probe).map_err(|e| ReportError::Invalid(e.to_string()))?;
        }
        let mut conn = self.conn().await?;
        let mut tx = self
            .index
            .begin_write(&mut conn)
            .await
            .map_err(|e| ReportError::Database(e.to_string()))?;
        let mut put = vec![("institution", institution.to_owned())];
        if let Some(png) = logo_png {
            put.push((
                "logo_png",
                base64::engine::general_purpose::STANDARD.encode(png),
            ));
        }
        for (k, v) in put {
            sqlx::query(
                "INSERT INTO ris_settings (tenant_id, name, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant_id, name) DO UPDATE SET value = $3",
            )
            .bind(tenant.as_str())
            .bind(k)
            .bind(v)
            .execute(&mut *tx)
            .await
            .map_err(db("branding"))?;
        }
        tx.commit().await.map_err(db("commit"))?;
        self.audit(
            tenant,
            actor,
            "report.branding",
            "branding".into(),
            institution.to_owned(),
        );
        Ok(())
    }

    /// Record the SR object a version was stored as.
    pub async fn set_sr(
        &self,
        tenant: &TenantId,
        id: &str,
        version: i64,
        sop_uid: &str,
    ) -> Result<(), ReportError> {
        let mut conn = self.conn().await?;
        sqlx::query("UPDATE report_versions SET sr_sop_uid = $1 WHERE tenant_id = $2 AND report_id = $3 AND version = $4")
            .bind(sop_uid)
            .bind(tenant.as_str())
            .bind(id)
            .bind(version)
            .execute(&mut *conn)
            .await
            .map_err(db("record SR"))?;
        Ok(())
    }

    /// Flag a critical result (text, to whom it must be communicated).
    pub async fn flag_critical(
        &self,
        tenant: &TenantId,
        id: &str,
        text: &str,
        actor: &Actor,
    ) -> Result<Report, ReportError> {
        let text = text.trim();
        if text.is_empty() || text.chars().count() > 1024 {
            return Err(ReportError::Invalid(
                "a critical result needs a text of at most 1024 characters".into(),
            ));
        }
        self.row(tenant, id).await?;
        let mut conn = self.conn().await?;
        sqlx::query(
            "UPDATE reports SET critical = $1, critical_at = $2, critical_ack_by = '', critical_ack_at = 0, updated_at = $2 \
             WHERE tenant_id = $3 AND id = $4",
        )
        .bind(text)
        .bind(now_millis())
        .bind(tenant.as_str())
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(db("flag critical"))?;
        drop(conn);
        self.audit(
            tenant,
            actor,
            "report.critical.flag",
            format!("report {id}"),
            text.to_owned(),
        );
        self.get(tenant, id).await
    }

    /// The referring clinician acknowledges the critical result.
    pub async fn acknowledge_critical(
        &self,
        tenant: &TenantId,
        id: &str,
        actor: &Actor,
    ) -> Result<Report, ReportError> {
        let r = self.row(tenant, id).await?;
        if s(&r, "critical")?.is_empty() {
            return Err(ReportError::Conflict(
                "the report has no critical result".into(),
            ));
        }
        if n(&r, "critical_ack_at")? > 0 {
            return Err(ReportError::Conflict(
                "the critical result is acknowledged already".into(),
            ));
        }
        let mut conn = self.conn().await?;
        sqlx::query("UPDATE reports SET critical_ack_by = $1, critical_ack_at = $2 WHERE tenant_id = $3 AND id = $4")
            .bind(actor.user.as_str())
            .bind(now_millis())
            .bind(tenant.as_str())
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(db("acknowledge"))?;
        drop(conn);
        self.audit(
            tenant,
            actor,
            "report.critical.ack",
            format!("report {id}"),
            String::new(),
        );
        self.get(tenant, id).await
    }

    /// The rendered HTML of the working copy (escaped, safe to insert).
    pub async fn html(&self, tenant: &TenantId, id: &str) -> Result<String, ReportError> {
        let r = self.get(tenant, id).await?;
        let t = self
            .template(tenant, &r.template_id, r.template_version)
            .await?;
        let mut text = r.content.narrative.clone();
        if !r.content.impression.trim().is_empty() {
            text.push_str(&format!("\n\nImpression:\n{}", r.content.impression));
        }
        for (i, a) in r.content.addenda.iter().enumerate() {
            text.push_str(&format!("\n\nAddendum {}:\n{a}", i + 1));
        }
        Ok(t.render_html(&values_of(&r.content)?, &text))
    }

    /// The report's sections as plain text (for PDF and SR): the template's sections, the
    /// narrative, the impression and the addenda.
    pub async fn sections(
        &self,
        tenant: &TenantId,
        r: &Report,
    ) -> Result<Vec<(String, String)>, ReportError> {
        let t = self
            .template(tenant, &r.template_id, r.template_version)
            .await?;
        let mut out = t.sections_text(&values_of(&r.content)?);
        if !r.content.narrative.trim().is_empty() {
            out.push(("Narrative".into(), r.content.narrative.clone()));
        }
        if !r.content.impression.trim().is_empty() {
            out.push(("Impression".into(), r.content.impression.clone()));
        }
        for (i, a) in r.content.addenda.iter().enumerate() {
            out.push((format!("Addendum {}", i + 1), a.clone()));
        }
        Ok(out)
    }
}

/// The template values of a report, as the template module types them.
fn values_of(c: &ReportContent) -> Result<crate::template::Values, ReportError> {
    let v = serde_json::to_value(&c.values).map_err(|e| ReportError::Invalid(e.to_string()))?;
    serde_json::from_value(v).map_err(|e| ReportError::Invalid(format!("values: {e}")))
}

fn describe(problems: &[crate::template::FieldProblem]) -> String {
    problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// For the lung-nodule template: the Lung-RADS category field takes the category computed
/// from the entered nodules (when they can be assessed); other templates are unchanged.
fn with_computed_category(
    template_id: &str,
    content: &ReportContent,
) -> Result<ReportContent, ReportError> {
    let mut c = content.clone();
    if template_id == crate::lungrads::LUNG_NODULE_TEMPLATE_ID
        && let Some(exam) = crate::lungrads::from_template_values(&values_of(content)?)
        && let Ok(a) = crate::lungrads::assess(&exam)
    {
        c.values.insert(
            "lungrads_category".into(),
            serde_json::json!(a.category.as_str()),
        );
        if a.s_modifier {
            c.values
                .insert("s_modifier".into(), serde_json::json!("yes"));
        }
    }
    Ok(c)
}
