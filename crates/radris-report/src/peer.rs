//! Quality: RADPEER-style peer review (random sampling of signed reports of other
//! radiologists; score 1–3, with a/b for clinical significance when 2 or 3; discrepancy
//! follow-up) and the QA figures: review scores, critical-result communication times.

use radris_core::TenantId;
use radris_ris::Actor;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::service::{ReportError, Reports};

/// One peer review (pending while `reviewed_at` is null).
#[derive(Debug, Clone, Serialize)]
pub struct PeerReview {
    pub id: String,
    pub report_id: String,
    pub reviewer: String,
    pub score: Option<i64>,
    /// `a` (unlikely to be clinically significant) or `b` (likely), for scores 2 and 3.
    pub significance: String,
    pub comment: String,
    pub followup: String,
    pub assigned_at: Option<String>,
    pub reviewed_at: Option<String>,
}

/// Quality figures of a tenant.
#[derive(Debug, Clone, Serialize)]
pub struct Quality {
    pub reviews_done: i64,
    pub reviews_pending: i64,
    /// `1`, `2a`, `2b`, `3a`, `3b` → count.
    pub by_score: std::collections::BTreeMap<String, i64>,
    /// Share of reviews scored 2 or 3.
    pub discrepancy_rate: Option<f64>,
    pub critical_flagged: i64,
    pub critical_acknowledged: i64,
    pub critical_mean_communication_min: Option<f64>,
    pub reports_signed: i64,
    /// Mean minutes from images complete to the final signature, over finally reported orders.
    pub images_to_final_mean_min: Option<f64>,
    /// Mean minutes from images complete to the preliminary signature, where there was one.
    pub images_to_preliminary_mean_min: Option<f64>,
}

fn iso(ms: i64) -> Option<String> {
    (ms > 0).then(|| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default()
    })
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn db(what: &'static str) -> impl FnOnce(sqlx::Error) -> ReportError {
    move |e| ReportError::Database(format!("{what}: {e}"))
}

fn review_row(r: &sqlx::any::AnyRow) -> Result<PeerReview, ReportError> {
    let g = |c: &str| {
        r.try_get::<String, _>(c)
            .map_err(|e| ReportError::Database(e.to_string()))
    };
    let n = |c: &str| {
        r.try_get::<i64, _>(c)
            .map_err(|e| ReportError::Database(e.to_string()))
    };
    let reviewed = n("reviewed_at")?;
    Ok(PeerReview {
        id: g("id")?,
        report_id: g("report_id")?,
        reviewer: g("reviewer")?,
        score: (reviewed > 0).then_some(n("score")?),
        significance: g("significance")?,
        comment: g("comment")?,
        followup: g("followup")?,
        assigned_at: iso(n("assigned_at")?),
        reviewed_at: iso(reviewed),
    })
}

impl Reports {
    /// Draw up to `count` signed final reports by other radiologists, not yet reviewed by
    /// `reviewer`, at random, and assign them.
    pub async fn assign_peer_reviews(
        &self,
        tenant: &TenantId,
        reviewer: &Actor,
        count: usize,
    ) -> Result<Vec<PeerReview>, ReportError> {
        let mut conn = self.index().pool().acquire().await.map_err(db("acquire"))?;
        let rows = sqlx::query(
            "SELECT r.id FROM reports r WHERE r.tenant_id = $1 AND r.status IN ('final', 'amended') AND r.author <> $2 \
             AND NOT EXISTS (SELECT 1 FROM peer_reviews p WHERE p.tenant_id = r.tenant_id AND p.report_id = r.id AND p.reviewer = $2) \
             AND NOT EXISTS (SELECT 1 FROM report_versions v WHERE v.tenant_id = r.tenant_id AND v.report_id = r.id AND v.signer = $2)",
        )
        .bind(tenant.as_str())
        .bind(reviewer.user.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(db("candidates"))?;
        let salt = now_millis().to_le_bytes();
        let mut ids: Vec<(Vec<u8>, String)> = rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>("id").ok())
            .map(|id| {
                (
                    Sha256::new()
                        .chain_update(salt)
                        .chain_update(id.as_bytes())
                        .finalize()
                        .to_vec(),
                    id,
                )
            })
            .collect();
        ids.sort();
        let mut out = Vec::new();
        for (_, report_id) in ids.into_iter().take(count.clamp(1, 50)) {
            let id = uuid::Uuid::now_v7().to_string();
            sqlx::query(
                "INSERT INTO peer_reviews (tenant_id, id, report_id, reviewer, score, significance, comment, followup, assigned_at, reviewed_at) \
                 VALUES ($1, $2, $3, $4, 0, '', '', '', $5, 0)",
            )
            .bind(tenant.as_str())
            .bind(id.as_str())
            .bind(report_id.as_str())
            .bind(reviewer.user.as_str())
            .bind(now_millis())
            .execute(&mut *conn)
            .await
            .map_err(db("assign review"))?;
            out.push(id);
        }
        drop(conn);
        self.audit_pub(
            tenant,
            reviewer,
            "report.peer.assign",
            "peer review".into(),
            format!("assigned={}", out.len()),
        );
        self.peer_reviews(tenant, &reviewer.user).await
    }

    /// A reviewer's reviews, pending first.
    pub async fn peer_reviews(
        &self,
        tenant: &TenantId,
        reviewer: &str,
    ) -> Result<Vec<PeerReview>, ReportError> {
        let mut conn = self.index().pool().acquire().await.map_err(db("acquire"))?;
        let rows = sqlx::query(
            "SELECT id, report_id, reviewer, score, significance, comment, followup, assigned_at, reviewed_at FROM peer_reviews \
             WHERE tenant_id = $1 AND reviewer = $2 ORDER BY reviewed_at, assigned_at",
        )
        .bind(tenant.as_str())
        .bind(reviewer)
        .fetch_all(&mut *conn)
        .await
        .map_err(db("reviews"))?;
        rows.iter().map(review_row).collect()
    }

    /// Score a review: 1 agree; 2 discrepancy in interpretation, not ordinarily expected to be
    /// made; 3 discrepancy that should be made most of the time; 2 and 3 carry `a` or `b`.
    pub async fn submit_peer_review(
        &self,
        tenant: &TenantId,
        id: &str,
        reviewer: &Actor,
        score: i64,
        significance: &str,
        comment: &str,
    ) -> Result<PeerReview, ReportError> {
        let sig = significance.trim().to_ascii_lowercase();
        match (score, sig.as_str()) {
            (1, "") | (2 | 3, "a" | "b") => {}
            (1, _) => {
                return Err(ReportError::Invalid(
                    "score 1 (concur) takes no significance".into(),
                ));
            }
            (2 | 3, _) => {
                return Err(ReportError::Invalid(
                    "scores 2 and 3 need significance a or b".into(),
                ));
            }
            _ => return Err(ReportError::Invalid("the score is 1, 2 or 3".into())),
        }
        if comment.chars().count() > 4096 {
            return Err(ReportError::Invalid(
                "the comment is longer than 4096 characters".into(),
            ));
        }
        let mut conn = self.index().pool().acquire().await.map_err(db("acquire"))?;
        let done = sqlx::query(
            "UPDATE peer_reviews SET score = $1, significance = $2, comment = $3, reviewed_at = $4 \
             WHERE tenant_id = $5 AND id = $6 AND reviewer = $7 AND reviewed_at = 0",
        )
        .bind(score)
        .bind(sig.as_str())
        .bind(comment)
        .bind(now_millis())
        .bind(tenant.as_str())
        .bind(id)
        .bind(reviewer.user.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db("score review"))?
        .rows_affected();
        if done == 0 {
            return Err(ReportError::Conflict(
                "no open review of yours with that id".into(),
            ));
        }
        drop(conn);
        self.audit_pub(
            tenant,
            reviewer,
            "report.peer.score",
            format!("review {id}"),
            format!("{score}{sig}"),
        );
        self.peer_reviews(tenant, &reviewer.user)
            .await?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| ReportError::NotFound(format!("review {id}")))
    }

    /// Record the follow-up of a discrepancy (scores 2 and 3): what was done about it (the
    /// author informed, the clinician called, an addendum written). Admins and the reviewer.
    pub async fn follow_up(
        &self,
        tenant: &TenantId,
        id: &str,
        text: &str,
        actor: &Actor,
    ) -> Result<PeerReview, ReportError> {
        let text = text.trim();
        if text.is_empty() || text.chars().count() > 4096 {
            return Err(ReportError::Invalid(
                "the follow-up is 1 to 4096 characters".into(),
            ));
        }
        let mut conn = self.index().pool().acquire().await.map_err(db("acquire"))?;
        let row = sqlx::query("SELECT reviewer, score, reviewed_at FROM peer_reviews WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db("review"))?
            .ok_or_else(|| ReportError::NotFound(format!("review {id}")))?;
        let (score, reviewed): (i64, i64) = (
            row.try_get("score").map_err(db("review"))?,
            row.try_get("reviewed_at").map_err(db("review"))?,
        );
        if reviewed == 0 || score < 2 {
            return Err(ReportError::Conflict(
                "only a scored discrepancy (2 or 3) has a follow-up".into(),
            ));
        }
        sqlx::query("UPDATE peer_reviews SET followup = $1 WHERE tenant_id = $2 AND id = $3")
            .bind(text)
            .bind(tenant.as_str())
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(db("follow-up"))?;
        let reviewer: String = row.try_get("reviewer").map_err(db("review"))?;
        drop(conn);
        self.audit_pub(
            tenant,
            actor,
            "report.peer.followup",
            format!("review {id}"),
            text.to_owned(),
        );
        self.peer_reviews(tenant, &reviewer)
            .await?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| ReportError::NotFound(format!("review {id}")))
    }

    /// The quality figures.
    pub async fn quality(&self, tenant: &TenantId) -> Result<Quality, ReportError> {
        let mut conn = self.index().pool().acquire().await.map_err(db("acquire"))?;
        let mut by_score = std::collections::BTreeMap::new();
        let (mut done, mut pending, mut discrepant) = (0, 0, 0);
        for r in sqlx::query(
            "SELECT score, significance, reviewed_at FROM peer_reviews WHERE tenant_id = $1",
        )
        .bind(tenant.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(db("reviews"))?
        {
            let reviewed: i64 = r.try_get("reviewed_at").map_err(db("reviews"))?;
            if reviewed == 0 {
                pending += 1;
                continue;
            }
            done += 1;
            let score: i64 = r.try_get("score").map_err(db("reviews"))?;
            let sig: String = r.try_get("significance").map_err(db("reviews"))?;
            if score >= 2 {
                discrepant += 1;
            }
            *by_score.entry(format!("{score}{sig}")).or_insert(0) += 1;
        }
        let mut times = Vec::new();
        let (mut flagged, mut acked) = (0, 0);
        for r in sqlx::query("SELECT critical_at, critical_ack_at FROM reports WHERE tenant_id = $1 AND critical <> ''")
            .bind(tenant.as_str())
            .fetch_all(&mut *conn)
            .await
            .map_err(db("critical results"))?
        {
            flagged += 1;
            let (f, a): (i64, i64) = (
                r.try_get("critical_at").map_err(db("critical"))?,
                r.try_get("critical_ack_at").map_err(db("critical"))?,
            );
            if a > 0 {
                acked += 1;
                times.push((a - f) as f64 / 60_000.0);
            }
        }
        let signed: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM report_versions WHERE tenant_id = $1")
                .bind(tenant.as_str())
                .fetch_one(&mut *conn)
                .await
                .map_err(db("signed"))?
                .try_get("n")
                .map_err(db("signed"))?;
        let mut to_final = Vec::new();
        let mut to_prelim = Vec::new();
        for r in sqlx::query(
            "SELECT o.images_at, o.preliminary_at, o.final_at FROM ris_orders o \
             JOIN reports r ON r.tenant_id = o.tenant_id AND r.order_id = o.id \
             WHERE o.tenant_id = $1 AND o.images_at > 0",
        )
        .bind(tenant.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(db("turnaround"))?
        {
            let (images, prelim, fin): (i64, i64, i64) = (
                r.try_get("images_at").map_err(db("turnaround"))?,
                r.try_get("preliminary_at").map_err(db("turnaround"))?,
                r.try_get("final_at").map_err(db("turnaround"))?,
            );
            if fin >= images && fin > 0 {
                to_final.push((fin - images) as f64 / 60_000.0);
            }
            if prelim >= images && prelim > 0 {
                to_prelim.push((prelim - images) as f64 / 60_000.0);
            }
        }
        let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        Ok(Quality {
            images_to_final_mean_min: mean(&to_final),
            images_to_preliminary_mean_min: mean(&to_prelim),
            reviews_done: done,
            reviews_pending: pending,
            by_score,
            discrepancy_rate: (done > 0).then(|| discrepant as f64 / done as f64),
            critical_flagged: flagged,
            critical_acknowledged: acked,
            critical_mean_communication_min: (!times.is_empty())
                .then(|| times.iter().sum::<f64>() / times.len() as f64),
            reports_signed: signed,
        })
    }
}
